"""What an output may replace: the one rule every command applies before it writes over an existing path.

``--overwrite`` replaces only an output that mpfpipe itself wrote, recognised by its own metadata (a dataset's
``mpfpipe_dataset`` attribute, a segmentation's ``mpfpipe`` attribute, a model's ``mpfpipe`` safetensors metadata,
a run folder's ``workflow.json``, a checkpoint's ``__meta__``, ...). It never replaces an input of the same
command (paths are compared resolved, so ``./a.zarr`` and ``a.zarr`` or a symlink are the same), nor writes an
output inside an input, nor replaces a folder that holds an input. Anything else (a user's folder, an ordinary
file) is refused with one line, whatever the flags.

Every command goes through `check_outputs` with all its outputs at once: besides the rule above it refuses two
outputs of one run that are the same path or lie one inside the other (``--log`` = ``--checkpoint``, an
evaluation folder inside the run's segmentation, ...), before anything is written.

A folder output that a command fills step by step is `claim` ed first: a ``.mpfpipe-writing`` marker naming its
kind is written into it before anything else, and `release` d when the command has written its own metadata.
A run that dies in between (a full disk, an empty input, a kill) so leaves a folder that `recognise` still
calls mpfpipe's, and the same command with ``--overwrite`` replaces it instead of calling it a user's folder.
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from .errors import OutputExistsError

# kind -> what the refusal calls it
KINDS = {"dataset": "mpfpipe dataset", "segmentation": "mpfpipe segmentation", "model": "mpfpipe model file",
         "run": "mpfpipe run folder", "checkpoint": "mpfpipe training checkpoint", "log": "mpfpipe training log",
         "plot": "mpfpipe loss plot", "report": "mpfpipe evaluation report", "empty": "empty folder",
         "folder-segmentation": "mpfpipe folder segmentation (masks/ + detections.csv)",
         "evaluation": "mpfpipe evaluation folder (report.json + overlays)", "onnx": "mpfpipe ONNX export",
         "bioimageio": "mpfpipe bioimage.io package"}
LOG_FIELDS = {"step", "epoch", "batch", "loss_before", "loss", "grad_norm", "step_size", "ls_evals"}  # train's log
CLAIM = ".mpfpipe-writing"  # inside a folder output being written: {"kind": ..., "pid": ...}


def _zarr_attrs(p: Path) -> dict | None:
    try:
        doc = json.loads((p / "zarr.json").read_text())
    except (OSError, ValueError):
        return None
    attrs = doc.get("attributes") if isinstance(doc, dict) else None
    return attrs if isinstance(attrs, dict) else None


def _safetensors_meta(p: Path) -> dict | None:
    """The ``__metadata__`` of a safetensors header, read by hand: 8-byte little-endian length, then JSON."""
    try:
        with open(p, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n > 100_000_000:
                return None
            header = json.loads(fh.read(n))
    except (OSError, ValueError, struct.error):
        return None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else None


def _json_format(path: Path, key: str = "format"):
    """The "format" (or ``key``) of a JSON state file mpfpipe writes, or None (absent, unreadable, not ours)."""
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return state.get(key) if isinstance(state, dict) else None


def recognise(path) -> str | None:
    """The kind of mpfpipe output at ``path`` (a key of `KINDS`), "missing", or None for anything else."""
    p = Path(path)
    if not (p.exists() or p.is_symlink()):
        return "missing"
    if p.is_dir():
        if not any(p.iterdir()):
            return "empty"
        claimed = _json_format(p / CLAIM, "kind")
        if claimed in KINDS:
            return claimed
        attrs = _zarr_attrs(p)
        if attrs is not None:
            if isinstance(attrs.get("mpfpipe_dataset"), dict):
                return "dataset"
            meta = attrs.get("mpfpipe")
            if isinstance(meta, dict) and meta.get("format") == "mpfpipe-segmentation":
                return "segmentation"
        if _json_format(p / "mpfpipe.json") == "mpfpipe-folder-segmentation":
            return "folder-segmentation"
        if _json_format(p / "workflow.json") == "mpfpipe-run":
            return "run"
        if recognise(p / "report.json") == "report":
            return "evaluation"
        return None
    name = p.name.lower()
    if name.endswith(".safetensors") or name.endswith(".tmp"):
        meta = _safetensors_meta(p)
        if meta is not None and "mpfpipe" in meta:
            return "model"
    if name.endswith(".npz"):
        try:
            import numpy as np
            with np.load(p, allow_pickle=False) as z:
                if "__meta__" in z.files and json.loads(bytes(z["__meta__"]).decode()).get("format") == \
                        "mpfpipe-checkpoint":
                    return "checkpoint"
        except Exception:  # noqa: BLE001 - unreadable: not ours
            return None
    if name.endswith(".jsonl"):
        try:
            with open(p) as fh:
                first = fh.readline()
            rec = json.loads(first) if first.strip() else {}
            if isinstance(rec, dict) and (not rec or LOG_FIELDS <= rec.keys()):  # a step record of ours, all of it
                return "log"
        except (OSError, ValueError, TypeError):
            return None
    if name.endswith(".png"):
        try:
            with open(p, "rb") as fh:
                head = fh.read(4096)
            # ours carry Software=mpfpipe; matplotlib's own tag alone is any figure of the user's
            if head.startswith(b"\x89PNG") and b"Software\x00mpfpipe" in head:
                return "plot"
        except OSError:
            return None
    try:  # exports, whatever their name (--format): by their first bytes
        with open(p, "rb") as fh:
            head = fh.read(64)
    except OSError:
        return None
    if head[:1] == b"\x08" and b"\x12\x07mpfpipe" in head:  # ONNX: ir_version, then producer_name "mpfpipe"
        return "onnx"
    if head.startswith(b"PK\x03\x04"):
        import zipfile
        try:
            with zipfile.ZipFile(p) as zf:
                if "rdf.yaml" in zf.namelist() and b"exported by mpfpipe" in zf.read("rdf.yaml"):
                    return "bioimageio"
        except (OSError, zipfile.BadZipFile, KeyError):
            return None
    if name.endswith(".json"):
        try:
            doc = json.loads(p.read_text())
            if isinstance(doc, dict) and "mpfpipe_version" in doc:
                return "report"
        except (OSError, ValueError):
            return None
    return None


def _resolved(path) -> Path:
    return Path(os.path.abspath(Path(path).expanduser())).resolve()


def _within(a: Path, b: Path) -> bool:
    """a is b or lies inside b."""
    return a == b or b in a.parents


def check_output(output, *, kinds, inputs=(), overwrite: bool = False, what: str = "output") -> bool:
    """Check that ``output`` may be written: raise OutputExistsError (one line) unless it is missing, or exists
    with ``overwrite`` and is an mpfpipe output of one of ``kinds``. It must never be, lie inside, or (when it
    exists and would be replaced) hold one of ``inputs``. Returns True when the output exists (to be replaced)."""
    out = _resolved(output)
    for src in inputs:
        if src is None or (isinstance(src, str) and src.startswith("synthetic:")):
            continue
        try:
            inp = _resolved(src)
        except (OSError, RuntimeError, TypeError):
            continue
        if out == inp:
            raise OutputExistsError(f"{what} {output} is also an input of this command ({src}); refusing to "
                                    "write over it: choose another output")
        if _within(out, inp):
            raise OutputExistsError(f"{what} {output} lies inside the input {src}; refusing to write into an "
                                    "input: choose another output")
        if _within(inp, out) and out.exists():
            raise OutputExistsError(f"{what} {output} holds the input {src}; refusing to replace it: choose "
                                    "another output")
    kind = recognise(output)
    if kind == "missing":
        return False
    if not overwrite:
        raise OutputExistsError(f"{what} {output} exists; pass --overwrite (overwrite=True) to replace it")
    allowed = set(kinds) | {"empty"}
    if kind not in allowed:
        names = " or ".join(KINDS[k] for k in kinds)
        if kind in KINDS:  # ours, but another kind of output: this command would destroy another one's result
            raise OutputExistsError(f"{what} {output} is an {KINDS[kind]}, not an {names}; --overwrite replaces "
                                    "only an output of the same kind: choose another output")
        found = "a folder" if Path(output).is_dir() else "a file"
        raise OutputExistsError(f"{what} {output} is {found} that mpfpipe did not write (not an {names}, or a "
                                "damaged one); --overwrite replaces only mpfpipe's own outputs: move it away or "
                                "choose another output")
    return True


def _overlap_error(a, b) -> OutputExistsError | None:
    """The refusal for two outputs ``a`` and ``b`` (each (what, path)) of one run that collide, or None."""
    (wa, pa), (wb, pb) = a, b
    ra, rb = _resolved(pa), _resolved(pb)
    if ra == rb:
        return OutputExistsError(f"{wa} {pa} and {wb} {pb} are the same file: one run's outputs must not "
                                 "collide; give each its own path")
    for (w1, p1, r1), (w2, p2, r2) in (((wa, pa, ra), (wb, pb, rb)), ((wb, pb, rb), (wa, pa, ra))):
        if _within(r1, r2):
            return OutputExistsError(f"{w1} {p1} lies inside {w2} {p2}: one run's outputs must not overlap; give "
                                     "each its own path")
    return None


def check_outputs(outputs, *, inputs=(), overwrite: bool = False) -> dict:
    """The one check every command makes before it writes: ``outputs`` is a list of ``(what, path, kinds)`` or
    ``(what, path, kinds, overwrite)`` (an output's own flag, e.g. a checkpoint replaced on resume). Refuses,
    before anything is written, two outputs that are one path or lie one inside the other, then checks each with
    `check_output` against ``inputs``. Returns {what: True when that output exists and will be replaced}."""
    items = [(o[0], o[1], tuple(o[2]), overwrite if len(o) < 4 else bool(o[3])) for o in outputs
             if o[1] is not None]
    for i, a in enumerate(items):
        for b in items[i + 1:]:
            err = _overlap_error(a[:2], b[:2])
            if err is not None:
                raise err
    return {what: check_output(path, kinds=kinds, inputs=inputs, overwrite=ow, what=what)
            for what, path, kinds, ow in items}


def check_train_outputs(files: dict, *, inputs, overwrite: bool, resume: bool) -> None:
    """The files of a training run (``model``, ``checkpoint``, ``log``, ``plot``): the model is replaced only
    with ``overwrite``, the checkpoint with ``overwrite`` or ``resume``; the log and plot are rewritten by every
    run, but like the others only when mpfpipe wrote them."""
    check_outputs([("model", files["model"], ("model",)),
                   ("checkpoint", files["checkpoint"], ("checkpoint",), overwrite or resume),
                   ("log", files["log"], ("log",), True), ("plot", files["plot"], ("plot",), True)],
                  inputs=inputs, overwrite=overwrite)


def claim(folder, kind: str) -> Path:
    """Create the folder output ``folder`` (checked by `check_outputs` first) and mark it as mpfpipe's ``kind``
    being written, before anything else goes into it (see the module doc)."""
    p = Path(folder)
    p.mkdir(parents=True, exist_ok=True)
    marker = p / CLAIM
    try:
        marker.write_text(json.dumps({"kind": kind, "pid": os.getpid()}))
    except OSError:
        marker.unlink(missing_ok=True)
        if not any(p.iterdir()):
            p.rmdir()  # a full disk: leave nothing rather than a folder nobody can tell is ours
        raise
    return p


def remove(path) -> None:
    """Delete an output `check_outputs` allowed to be replaced (a folder or a file)."""
    import shutil
    p = Path(path)
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    else:
        p.unlink(missing_ok=True)


def release(folder) -> None:
    """The folder output is complete (or carries its own metadata): drop the `claim` marker."""
    (Path(folder) / CLAIM).unlink(missing_ok=True)
