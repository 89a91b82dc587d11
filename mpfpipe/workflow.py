"""Workflows: YAML files that chain ingest -> train -> segment -> evaluate into one run folder.

A workflow file::

    name: quickstart
    description: one line shown by `mpfpipe run --dry-run`
    params:                      # defaults; override with `mpfpipe run FILE --set n_images=4`
      n_images: 12
      size: 128x128
    steps:                       # run in order; each item is {KIND: {options}}
      - ingest:   {id: data, source: "synthetic:em", n_images: "${n_images}", size: "${size}", split: [0.75, 0.25]}
      - train:    {dataset: data, net: steel, optimizer: lbfgs, epochs: 40}
      - segment:  {input: test}
      - evaluate: {}

Parameters: ``${name}`` anywhere in a string is replaced by the parameter's value (a string that is exactly
``${name}`` takes the value with its type, so ``epochs: ${iterations}`` stays an integer). Built-ins: ``${run}``
(the run folder) and ``${workflow_dir}`` (the folder of the workflow file). ``--set key=value`` values are
read as YAML scalars (``4`` is an int, ``0.5`` a float, ``[0.5, 0.5]`` a list, anything else a string); an
unknown key is an error.

Steps call the Python APIs (`mpfpipe.data`, `mpfpipe.train.train`, `mpfpipe.segment.segment`,
`mpfpipe.evaluate.evaluate`) with the step's options; every option is checked against the API before anything
runs. Inputs (``train.dataset``, ``segment.model`` / ``input``, ``evaluate.pred`` / ``truth`` / ``image``) name an
earlier step's ``id`` (its output) or a path; they default to the latest ingest / train / segment step. Each
step's ``id`` defaults to its kind; give ids when a kind appears twice.

Run folder (``--out``, default ``runs/<name>``)::

    workflow.json            the resolved workflow (parameters, steps) and the status of every step
    data/<id>.zarr           ingested datasets
    model.safetensors        the trained model (a train step with another id: <id>.safetensors)
    train/                   log.jsonl (one line per step), loss.png (loss curves), checkpoint.npz
    segmentation.ome.zarr    the segment step's output (another id: <id>.ome.zarr)
    report.json, overlays/   the evaluate step's report and overlay PNGs (another id: <id>/...)
    summary.json, summary.md what ran, how long it took, the main numbers

An existing run folder is refused unless ``resume`` (finished steps are skipped, an interrupted training run
continues from its checkpoint, an unfinished segmentation from its done blocks) or ``overwrite`` (the folder is
cleared first) is given.
"""
from __future__ import annotations

import datetime as _dt
import inspect
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import __version__
from .errors import MpfError

KINDS = ("ingest", "train", "segment", "evaluate")
TOP_KEYS = {"name", "description", "params", "steps"}
BUILTINS = ("run", "workflow_dir")
_VAR = re.compile(r"\$\{([^}]*)\}")


class WorkflowError(MpfError):
    """A workflow file is invalid, or a parameter / input of it is wrong."""


# ------------------------------------------------------------------------------------------------ options
def _api_options(kind: str, synthetic: str | None = None) -> dict:
    """Options a step of ``kind`` accepts: name -> default (``inspect._empty`` when required)."""
    if kind == "ingest":
        from .data import ingest, synth_defects, synth_em
        fn = {"em": synth_em, "defects": synth_defects}.get(synthetic, ingest)
        skip = {"output", "overwrite", "progress", "sources"}
        opts = {n: p.default for n, p in inspect.signature(fn).parameters.items() if n not in skip}
        opts["source"] = inspect._empty
        return opts
    if kind == "train":
        from .train import train
        skip = {"dataset", "out", "checkpoint", "log", "plot", "resume", "overwrite", "scheduler", "scheduler_file",
                "workers", "threads", "host", "progress", "echo", "client"}
        opts = {n: p.default for n, p in inspect.signature(train).parameters.items() if n not in skip}
        opts["dataset"] = None
        return opts
    if kind == "segment":
        from .segment import segment
        skip = {"model", "input", "output", "workers", "scheduler", "overwrite", "progress"}
        opts = {n: p.default for n, p in inspect.signature(segment).parameters.items() if n not in skip}
        opts.update(model=None, input=None)
        return opts
    if kind == "evaluate":
        from .evaluate import evaluate
        skip = {"pred", "truth", "output", "overwrite", "splits", "image"}
        opts = {n: p.default for n, p in inspect.signature(evaluate).parameters.items() if n not in skip}
        opts.update(pred=None, truth=None, image=None, images="all", detection=True)
        return opts
    raise AssertionError(kind)


# ------------------------------------------------------------------------------------------------ model
@dataclass
class Step:
    index: int          # 1-based
    kind: str
    id: str
    options: dict       # resolved (parameters substituted, references still as ids)
    outputs: dict = field(default_factory=dict)   # name -> Path
    inputs: dict = field(default_factory=dict)    # option -> Path (resolved references)

    @property
    def label(self) -> str:
        return f"step {self.index} ({self.kind}{'' if self.id == self.kind else ' ' + repr(self.id)})"


@dataclass
class Workflow:
    path: Path
    name: str
    description: str
    params: dict        # effective values (defaults + overrides)
    defaults: dict
    raw_steps: list

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "file": str(self.path),
                "params": self.params}


def parse_sets(items) -> dict:
    """``["a=1", "b=x"]`` -> {"a": 1, "b": "x"} (values read as YAML scalars)."""
    out = {}
    for item in items or ():
        if isinstance(item, (tuple, list)):
            key, val = item
        else:
            if "=" not in str(item):
                raise WorkflowError(f"--set {item!r}: expected KEY=VALUE")
            key, val = str(item).split("=", 1)
        key = key.strip()
        if not key:
            raise WorkflowError(f"--set {item!r}: empty parameter name")
        if isinstance(val, str) and val.strip():
            try:
                parsed = yaml.safe_load(val)
            except yaml.YAMLError:
                parsed = val
            if not isinstance(parsed, dict):
                val = parsed
        out[key] = val
    return out


def load_workflow(path, sets=None) -> Workflow:
    """Read and check a workflow file; ``sets`` ({key: value} or ["key=value", ...]) override its params."""
    path = Path(path)
    if not path.is_file():
        raise WorkflowError(f"workflow file {path} not found")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise WorkflowError(f"{path} is not valid YAML{where}: {what}") from None
    if not isinstance(doc, dict):
        raise WorkflowError(f"{path}: a workflow is a mapping with 'name', 'params' and 'steps'")
    unknown = sorted(set(doc) - TOP_KEYS)
    if unknown:
        raise WorkflowError(f"{path}: unknown key(s) {', '.join(map(repr, unknown))} (known: name, description, "
                            "params, steps)")
    params = doc.get("params") or {}
    if not isinstance(params, dict):
        raise WorkflowError(f"{path}: 'params' must be a mapping of parameter names to default values")
    for k in params:
        if k in BUILTINS:
            raise WorkflowError(f"{path}: parameter name {k!r} is reserved (built-ins: {', '.join(BUILTINS)})")
    steps = doc.get("steps")
    if not isinstance(steps, list) or not steps:
        raise WorkflowError(f"{path}: 'steps' must be a non-empty list")
    overrides = sets if isinstance(sets, dict) else parse_sets(sets)
    bad = sorted(k for k in overrides if k not in params)
    if bad:
        known = ", ".join(sorted(params)) or "none"
        raise WorkflowError(f"unknown parameter {bad[0]!r} for workflow {path.name} (its parameters: {known})")
    name = str(doc.get("name") or path.stem)
    return Workflow(path, name, str(doc.get("description") or "").strip(), {**params, **overrides}, dict(params),
                    steps)


def _substitute(value, env: dict, where: str):
    if isinstance(value, dict):
        return {k: _substitute(v, env, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, env, where) for v in value]
    if not isinstance(value, str) or "${" not in value:
        return value
    for name in _VAR.findall(value):
        if name not in env:
            known = ", ".join(sorted(k for k in env if k not in BUILTINS)) or "none"
            raise WorkflowError(f"{where}: ${{{name}}} is not a parameter of this workflow (parameters: {known})")
    whole = _VAR.fullmatch(value)
    if whole:
        return env[whole.group(1)]
    return _VAR.sub(lambda m: str(env[m.group(1)]), value)


def _params_in(value) -> list:
    if isinstance(value, dict):
        return [p for v in value.values() for p in _params_in(v)]
    if isinstance(value, list):
        return [p for v in value for p in _params_in(v)]
    return _VAR.findall(value) if isinstance(value, str) else []


def plan(wf: Workflow, run_dir) -> list[Step]:
    """Resolve parameters, ids, references and output paths, and check every option, before anything runs."""
    run_dir = Path(run_dir)
    env = {**wf.params, "run": str(run_dir), "workflow_dir": str(wf.path.parent)}
    steps: list[Step] = []
    by_id: dict[str, Step] = {}
    latest: dict[str, Step] = {}
    for n, item in enumerate(wf.raw_steps, 1):
        if not isinstance(item, dict) or len(item) != 1:
            raise WorkflowError(f"{wf.path.name}: step {n} must be a mapping with one key, the step kind "
                                f"({', '.join(KINDS)}), e.g. '- train: {{net: steel}}'")
        (kind, raw), = item.items()
        if kind not in KINDS:
            raise WorkflowError(f"{wf.path.name}: step {n}: unknown step {kind!r} (steps: {', '.join(KINDS)})")
        raw = raw or {}
        if not isinstance(raw, dict):
            raise WorkflowError(f"{wf.path.name}: step {n} ({kind}): options must be a mapping")
        where = f"{wf.path.name}: step {n} ({kind})"
        opts = _substitute(dict(raw), env, where)
        sid = str(opts.pop("id", kind))
        if sid in by_id:
            raise WorkflowError(f"{where}: id {sid!r} is used twice; give each {kind} step its own 'id'")
        step = Step(n, kind, sid, opts)
        where = f"{wf.path.name}: {step.label}"
        synthetic = None
        if kind == "ingest":
            src = opts.get("source", opts.pop("sources", None))
            if src is None:
                raise WorkflowError(f"{where}: needs 'source' (files, a folder, or synthetic:em / synthetic:defects)")
            src = [str(s) for s in src] if isinstance(src, list) else [str(src)]
            opts["source"] = src
            if any(s.startswith("synthetic:") for s in src):
                synthetic = src[0].split(":", 1)[1]
                if len(src) != 1 or synthetic not in ("em", "defects"):
                    raise WorkflowError(f"{where}: a synthetic source is 'synthetic:em' or 'synthetic:defects', alone")
        known = _api_options(kind, synthetic)
        unknown = sorted(set(opts) - set(known))
        if unknown:
            raise WorkflowError(f"{where}: unknown option {unknown[0]!r} (options: {', '.join(sorted(known))})")
        missing = sorted(k for k, v in known.items() if v is inspect._empty and k not in opts)
        if missing:
            raise WorkflowError(f"{where}: option {missing[0]!r} is required")

        def ref(option, default_kind=None, required=True, must_exist=True):
            val = opts.get(option)
            if val is None:
                if default_kind and default_kind in latest:
                    return latest[default_kind].outputs["main"]
                if required:
                    raise WorkflowError(f"{where}: needs {option!r} (a step id or a path)"
                                        + (f"; no earlier {default_kind} step" if default_kind else ""))
                return None
            val = str(val)
            if val in by_id:
                return by_id[val].outputs["main"]
            p = Path(val)
            if must_exist and not p.exists():
                hint = _params_in(raw.get(option))
                raise WorkflowError(f"{where}: {option} {val!r} is neither an earlier step id "
                                    f"({', '.join(by_id) or 'none yet'}) nor an existing path"
                                    + (f"; set it with --set {hint[0]}=PATH" if hint else ""))
            return p

        if kind == "ingest":
            if not synthetic:
                for s in opts["source"]:
                    if not Path(s).exists():
                        hint = _params_in(raw.get("source", raw.get("sources")))
                        raise WorkflowError(f"{where}: data path {s} not found"
                                            + (f"; set it with --set {hint[0]}=PATH" if hint
                                               else " (paths are relative to the current folder)"))
            step.outputs["main"] = run_dir / "data" / f"{sid}.zarr"
        elif kind == "train":
            step.inputs["dataset"] = ref("dataset", "ingest")
            stem = "model" if sid == "train" else sid
            tdir = run_dir / ("train" if sid == "train" else sid)
            step.outputs.update(main=run_dir / f"{stem}.safetensors", checkpoint=tdir / "checkpoint.npz",
                                log=tdir / "log.jsonl", plot=tdir / "loss.png")
        elif kind == "segment":
            step.inputs["model"] = ref("model", "train")
            step.inputs["input"] = ref("input", "ingest")
            step.outputs["main"] = run_dir / ("segmentation.ome.zarr" if sid == "segment" else f"{sid}.ome.zarr")
        else:
            step.inputs["pred"] = ref("pred", "segment")
            truth = ref("truth", None, required=False)
            if truth is None:  # the segmented input, when it is a dataset made by an ingest step
                seg = next((s for s in steps if s.outputs.get("main") == step.inputs["pred"]), None)
                src = seg.inputs.get("input") if seg else None
                if src is None or not any(s.kind == "ingest" and s.outputs["main"] == src for s in steps):
                    raise WorkflowError(f"{where}: needs 'truth' (a dataset step id or a label stack path)")
                truth = src
            step.inputs["truth"] = truth
            img = ref("image", None, required=False)
            if img is not None:
                step.inputs["image"] = img
            base = run_dir if sid == "evaluate" else run_dir / sid
            step.outputs.update(main=base / "report.json", overlays=base / "overlays")
        steps.append(step)
        by_id[sid] = step
        latest[kind] = step
    return steps


# ------------------------------------------------------------------------------------------------ state
def json_safe(obj):
    """JSON-safe copy: numpy scalars/arrays to Python, NaN/inf to None, paths to strings."""
    import math

    import numpy as np
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(json_safe(obj), fh, indent=2, default=str)
    os.replace(tmp, path)


def _state_path(run_dir: Path) -> Path:
    return run_dir / "workflow.json"


def _prepare_run_dir(run_dir: Path, wf: Workflow, steps, overwrite: bool, resume: bool) -> dict:
    if overwrite and resume:
        raise WorkflowError("give either --resume or --overwrite, not both")
    state_file = _state_path(run_dir)
    resolved = {"params": wf.params, "steps": [{"kind": s.kind, "id": s.id, "options": s.options} for s in steps]}
    if run_dir.exists() and any(run_dir.iterdir()):
        if not state_file.is_file():
            raise WorkflowError(f"{run_dir} exists and is not an mpfpipe run folder (no workflow.json); choose "
                                "another --out")
        if overwrite:
            for child in run_dir.iterdir():
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        elif resume:
            try:
                state = json.loads(state_file.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise WorkflowError(f"{state_file} is unreadable ({exc}); use --overwrite to start again") from None
            old = state.get("resolved", {})
            if json.loads(json.dumps(old, default=str)) != json.loads(json.dumps(resolved, default=str)):
                diff = sorted(k for k in set(old.get("params", {})) | set(wf.params)
                              if old.get("params", {}).get(k) != wf.params.get(k))
                raise WorkflowError(f"cannot resume {run_dir}: it was run with different "
                                    + (f"parameters ({', '.join(diff)})" if diff else "steps")
                                    + "; use --overwrite or another --out")
            state["runs"] = state.get("runs", 0) + 1
            return state
        else:
            raise WorkflowError(f"run folder {run_dir} exists; pass --resume to continue it (finished steps are "
                                "skipped) or --overwrite to start again")
    run_dir.mkdir(parents=True, exist_ok=True)
    return {"format": "mpfpipe-run", "mpfpipe_version": __version__, "workflow": wf.to_dict(),
            "resolved": resolved, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "runs": 1, "steps": {}}


# ------------------------------------------------------------------------------------------------ steps
def _run_ingest(step: Step, ctx) -> dict:
    from .data import ingest, open_dataset, synth_defects, synth_em
    o = dict(step.options)
    src = o.pop("source")
    out = step.outputs["main"]
    out.parent.mkdir(parents=True, exist_ok=True)
    common = dict(overwrite=True, progress=ctx.progress)
    if src[0] == "synthetic:em":
        synth_em(out, **o, **common)
    elif src[0] == "synthetic:defects":
        synth_defects(out, **o, **common)
    else:
        ingest(src, out, **o, **common)
    ds = open_dataset(out)
    return {"dataset": str(out), "images": ds.n_images, "classes": ds.class_names, "splits": ds.split_sizes()}


def _augment(value, where):
    if value is None or isinstance(value, dict):
        return value
    import click

    from .cli.train import _parse_augment
    try:
        return _parse_augment(value)
    except click.BadParameter as exc:
        raise WorkflowError(f"{where}: augment: {exc.message}") from None


def _run_train(step: Step, ctx) -> dict:
    from .train import train
    o = dict(step.options)
    o.pop("dataset", None)
    o["augment"] = _augment(o.get("augment"), step.label)
    ck = step.outputs["checkpoint"]
    ck.parent.mkdir(parents=True, exist_ok=True)
    resume = ck.exists()
    if resume:
        ctx.say(f"  resuming the training run of {ck}")
    res = train(step.inputs["dataset"], out=step.outputs["main"], checkpoint=ck, log=step.outputs["log"],
                plot=step.outputs["plot"], resume=resume, overwrite=not resume, client=ctx.client,
                progress=ctx.progress, echo=ctx.say, **o)
    if res.status == "paused":
        raise WorkflowError(f"{step.label}: training paused (max_steps); rerun with --resume to continue")
    ctx.say(res.text)
    keep = ("status", "steps", "net", "n_params", "optimizer", "initial_loss", "final_loss", "best_val_loss",
            "best_val_error", "best_epoch", "timing", "cluster")
    return {k: res.summary.get(k) for k in keep} | {"model": str(step.outputs["main"]),
                                                    "loss_plot": str(step.outputs["plot"])}


def _run_segment(step: Step, ctx) -> dict:
    from .segment import segment
    o = dict(step.options)
    o.pop("model", None)
    o.pop("input", None)
    if isinstance(o.get("block"), str):
        o["block"] = tuple(int(v) for v in o["block"].replace("x", ",").split(","))
    if o.get("block") is not None and len(o["block"]) == 2:
        o["block"] = (1, *o["block"])
    from .errors import OutputExistsError

    def go(overwrite):
        return segment(step.inputs["model"], step.inputs["input"], step.outputs["main"], scheduler=ctx.scheduler,
                       workers=ctx.workers if ctx.scheduler is None else None, progress=ctx.progress,
                       overwrite=overwrite, **o)
    try:  # an unfinished output of the same model and settings resumes (done blocks are skipped)
        res = go(False)
    except OutputExistsError:  # complete, or made with another model / settings: recompute
        res = go(True)
    ctx.say(res.summary())
    return {"output": str(step.outputs["main"]), "blocks": res.blocks, "done": res.done, "skipped": res.skipped,
            "seconds": res.seconds, "voxels_per_s": res.voxels_per_s}


def _run_evaluate(step: Step, ctx) -> dict:
    import numpy as np

    from .evaluate import detection, evaluate
    from .evaluate.inputs import Prediction, Truth, load_prediction, load_truth

    o = dict(step.options)
    for k in ("pred", "truth", "image"):
        o.pop(k, None)
    images = o.pop("images", "all")
    want_detection = o.pop("detection", True)
    report_path, overlay_dir = step.outputs["main"], step.outputs["overlays"]
    if overlay_dir.exists():
        shutil.rmtree(overlay_dir)
    positive = int(o.get("positive", 1))
    threshold = float(o.get("threshold", 0.5))
    P = load_prediction(str(step.inputs["pred"]))
    T = load_truth(str(step.inputs["truth"]), truth_positive=o.get("truth_positive"), n_classes=P.n_classes or 2,
                   positive=positive)
    n = len(T.labels)
    if images in (None, "all"):
        idx = list(range(n))
    else:
        names = [images] if isinstance(images, str) else list(images)
        if T.dataset is None:
            raise WorkflowError(f"{step.label}: images: {images!r} needs a dataset as truth (its splits)")
        idx = sorted({i for nm in names for i in T.dataset.split(str(nm))})
    if len(P.probs) != n:
        raise WorkflowError(f"{step.label}: the prediction has {len(P.probs)} image(s), the truth {n}")
    image = None
    if T.dataset is not None:  # raw images of the subset, padded to a common size (overlays crop them)
        raws = [T.dataset.raw_image(i)[0] for i in idx]
        hmax, wmax = max(r.shape[0] for r in raws), max(r.shape[1] for r in raws)
        image = np.zeros((len(raws), hmax, wmax), np.float32)
        for j, r in enumerate(raws):
            image[j, :r.shape[0], :r.shape[1]] = r
    elif "image" in step.inputs:
        image = str(step.inputs["image"])
    splits = {}
    if T.splits:
        pos = {i: j for j, i in enumerate(idx)}
        splits = {k: [pos[i] for i in v if i in pos] for k, v in T.splits.items()}
        splits = {k: v for k, v in splits.items() if v}
    P2 = Prediction([P.probs[i] for i in idx], P.n_classes, P.source)
    T2 = Truth([T.labels[i] for i in idx], splits or None, None)
    rep = evaluate(P2, T2, output=overlay_dir, image=image, splits=splits if T.splits else {}, overwrite=True, **o)
    (overlay_dir / "report.json").unlink(missing_ok=True)
    # overlays named by image index in the truth, not by position in the subset
    files = []
    for f in rep.get("overlays", []):
        f = Path(f)
        j = int(f.stem.rsplit("z", 1)[1])
        new = f.with_name(f"overlay_{idx[j]:04d}.png")
        os.replace(f, new)
        files.append(str(new))
    rep["overlays"] = files
    rep["images"] = {"selection": images, "indices": idx}
    rep["prediction"], rep["truth"] = str(step.inputs["pred"]), str(step.inputs["truth"])
    if want_detection and T.splits and T.splits.get("val") and images not in (None, "all"):
        # detection: threshold on the val split, error on the test split, whatever subset the pixel metrics use
        allv = sorted(set(T.splits.get("val", [])) | set(T.splits.get("test", [])))
        counts, defective = [], []
        for i in range(n):
            p = P.probs[i]
            cls_pos = (np.argmax(p, 0) == positive) if (p.ndim == 3 and p.shape[0] > 2) else \
                (P.positive(i, positive) > threshold)
            counts.append(int(cls_pos.sum()))
            defective.append(bool((T.labels[i] == positive).any()))
        if allv:
            rep["detection"] = {**detection(counts, defective, {"val": T.splits.get("val"),
                                                                "test": T.splits.get("test")}),
                                "images": allv}
    elif not want_detection:
        rep.pop("detection", None)
    rep.pop("report", None)
    _write_json(report_path, rep)
    out = {"report": str(report_path), "overlays": files, "n_images": rep.get("n_images"),
           "pixel_error": rep.get("pixel_error"), "mean_iou": rep.get("mean_iou"),
           "balanced_error": rep.get("balanced_error")}
    if "rand" in rep:
        r = rep["rand"]
        out["rand"] = {k: r.get(k) for k in r if k != "curve"}
    if "detection" in rep:
        d = rep["detection"]
        out["detection"] = {k: d.get(k) for k in ("threshold", "chosen_on", "evaluated_on", "error", "confusion",
                                                  "n_images") if k in d}
    return out


RUNNERS = {"ingest": _run_ingest, "train": _run_train, "segment": _run_segment, "evaluate": _run_evaluate}


@dataclass
class _Ctx:
    client: object
    scheduler: str | None
    workers: int | None
    progress: bool
    say: object


def _step_done(step: Step, state: dict) -> bool:
    if state.get("steps", {}).get(step.id, {}).get("status") != "done":
        return False
    return step.outputs["main"].exists()


def run_workflow(path, sets=None, *, out=None, scheduler: str | None = None, scheduler_file: str | None = None,
                 workers: int | None = None, threads: int | None = None, overwrite: bool = False,
                 resume: bool = False, progress: bool = True, echo=None, dry_run: bool = False) -> dict:
    """Run the workflow file ``path`` into the run folder ``out`` (default ``runs/<name>``); see the module doc.
    Returns the summary dict (also written to ``summary.json`` / ``summary.md``)."""
    say = echo or (lambda *_: None)
    wf = load_workflow(path, sets)
    run_dir = Path(out) if out else Path("runs") / wf.name
    steps = plan(wf, run_dir)
    if dry_run:
        return {"workflow": wf.to_dict(), "run_dir": str(run_dir),
                "steps": [{"step": s.index, "kind": s.kind, "id": s.id, "options": s.options,
                           "inputs": {k: str(v) for k, v in s.inputs.items()},
                           "outputs": {k: str(v) for k, v in s.outputs.items()}} for s in steps]}
    if scheduler and scheduler_file:
        raise WorkflowError("give either --scheduler or --scheduler-file, not both")
    state = _prepare_run_dir(run_dir, wf, steps, overwrite, resume)
    _write_json(_state_path(run_dir), state)

    from .train import connect
    t_start = time.perf_counter()
    handle = None
    results = {}
    try:
        needs_cluster = any(s.kind in ("train", "segment") and not _step_done(s, state) for s in steps)
        if needs_cluster:
            handle = connect(workers=workers, threads=threads, scheduler=scheduler,
                             scheduler_file=scheduler_file)
            where = "local cluster" if handle.cluster is not None else f"scheduler {handle.address}"
            say(f"cluster: {where}, {handle.workers} worker(s)"
                + (f" x {handle.threads} thread(s)" if handle.threads else ""))
        # segment joins the same cluster by address (scheduler file for an external one given as a file)
        seg_sched = scheduler_file or (handle.address if handle is not None else None)
        ctx = _Ctx(handle.client if handle else None, seg_sched, workers, progress, say)
        for s in steps:
            rec = state["steps"].setdefault(s.id, {})
            if resume and _step_done(s, state):
                say(f"[{s.index}/{len(steps)}] {s.kind} {s.id}: done earlier, skipped")
                results[s.id] = rec.get("result", {})
                continue
            say(f"[{s.index}/{len(steps)}] {s.kind} {s.id} -> {s.outputs['main']}")
            t0 = time.perf_counter()
            rec.update(status="running", kind=s.kind)
            _write_json(_state_path(run_dir), state)
            try:
                result = RUNNERS[s.kind](s, ctx)
            except BaseException:
                rec["status"] = "failed"
                _write_json(_state_path(run_dir), state)
                raise
            rec.update(status="done", seconds=time.perf_counter() - t0, result=result)
            results[s.id] = result
            _write_json(_state_path(run_dir), state)
    finally:
        if handle is not None:
            handle.close()
    summary = {"workflow": wf.name, "file": str(wf.path), "run_dir": str(run_dir), "params": wf.params,
               "mpfpipe_version": __version__,
               "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
               "seconds": time.perf_counter() - t_start,
               "steps": [{"step": s.index, "kind": s.kind, "id": s.id,
                          "seconds": state["steps"][s.id].get("seconds"), "result": results.get(s.id)}
                         for s in steps]}
    _write_json(run_dir / "summary.json", summary)
    (run_dir / "summary.md").write_text(summary_markdown(summary))
    return summary


def _fmt(v, pct=False):
    if v is None:
        return "n/a"
    if pct:
        return f"{100 * v:.2f} %"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def summary_markdown(s: dict) -> str:
    lines = [f"# mpfpipe run: {s['workflow']}", "",
             f"Workflow `{s['file']}`, run folder `{s['run_dir']}`, mpfpipe {s['mpfpipe_version']}, "
             f"finished {s['finished']}; this invocation took {s['seconds']:.1f} s.", "",
             "Parameters: " + ", ".join(f"`{k}={v}`" for k, v in s["params"].items()), "",
             "| step | kind | id | seconds | result |", "| ---: | --- | --- | ---: | --- |"]
    for st in s["steps"]:
        r = st.get("result") or {}
        if st["kind"] == "ingest":
            txt = f"{r.get('images')} images, splits {r.get('splits')}"
        elif st["kind"] == "train":
            txt = (f"{r.get('status')}, {r.get('steps')} steps, loss {_fmt(r.get('initial_loss'))} -> "
                   f"{_fmt(r.get('final_loss'))}, best val pixel error {_fmt(r.get('best_val_error'), True)}")
        elif st["kind"] == "segment":
            txt = f"{r.get('blocks')} blocks ({r.get('skipped')} skipped), {_fmt(r.get('voxels_per_s'))} voxels/s"
        else:
            rand = r.get("rand") or {}
            txt = (f"{r.get('n_images')} images: pixel error {_fmt(r.get('pixel_error'), True)}, "
                   f"V_rand {_fmt(rand.get('v_rand'))}"
                   f" (threshold {_fmt(rand.get('best_threshold'))}), mean IoU {_fmt(r.get('mean_iou'))}")
            det = r.get("detection")
            if det:
                txt += f", detection error {_fmt(det.get('error'), True)} on {det.get('evaluated_on')}"
        secs = st.get("seconds")
        lines.append(f"| {st['step']} | {st['kind']} | {st['id']} | {'skipped' if secs is None else f'{secs:.1f}'}"
                     f" | {txt} |")
    lines.append("")
    return "\n".join(lines)
