"""Folder inference: every JPEG / PNG / TIFF image under a folder (any size) -> a class-id mask per image and a
detection list, resumable.

    from mpfpipe.segment.folder import segment_folder
    result = segment_folder("model.safetensors", "new_tiles/", "inspection/")
    print(result.summary())

Each image is one task (on a LocalCluster of worker processes, or in this process with ``workers=0``): it is
decoded (grey, or RGB with equal channels, reduced to one; anything else is an error naming the file), down-sampled
by the model's own factor (`mpfpipe.model.Model.downsample`, the block mean `ingest` applied to its training
images), segmented blockwise with the volume path's exact per-block computation (`blocks.compute_block`, so the
result does not depend on the block size; ``tta`` averages over the 8 flips and turns), and its class ids are
brought back to the source size (each model pixel covers F x F source pixels; the rows / columns the
down-sampling dropped take the nearest ones). The task writes ``OUTDIR/masks/<relative path>/<stem>.png`` (the
source's sub-folders are kept, so equal names in different folders do not collide; two images of one folder with
the same stem keep their suffix: ``<name>.png``) through a temporary file and a rename, then a done marker under
``OUTDIR/.done/``. A rerun skips images whose marker and mask exist and whose source file is unchanged; a mask
without a marker (an interrupted task) is computed again.

``OUTDIR/detections.csv`` (rewritten at the end of every run from the markers) has a row per image: ``image``
(path relative to FOLDER), ``height``, ``width``, ``defect_pixels`` (the mask's pixels of the defect class:
``positive`` for 2-class models, every class but 0 otherwise), ``flagged`` (defect_pixels > the detection
threshold), ``max_probability`` (the largest defect probability in the image) and ``error`` (why an image has no
result). The threshold is ``detect_threshold`` if given (source pixels), else the model's detection rule (chosen
on validation by the surface-defects workflow, in pixels at the model's resolution, so scaled by F^2), else 0
(any defect pixel flags the image).
"""
from __future__ import annotations

import csv
import io
import json
import os
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__, _lock, _safety
from ..cluster import task_runner
from ..errors import DataError, FolderSegmentError, MpfError, OutputExistsError
from .blocks import DEFAULT_BLOCK, Engine, block_grid, compute_block
from .imagefiles import (atomic_write, find_images, mask_names, png_bytes, read_image, source_stamp,
                         upsample_labels)

FORMAT = "mpfpipe-folder-segmentation"
STATE = "mpfpipe.json"     # OUTDIR/mpfpipe.json: format, settings, summary (recognised by mpfpipe._safety)
CSV_COLUMNS = ("image", "height", "width", "defect_pixels", "flagged", "max_probability", "error")


@dataclass
class FolderResult:
    output: str
    images: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    flagged: int = 0
    seconds: float = 0.0            # wall time of the image tasks (first submit to last result)
    seconds_per_image: float = 0.0  # seconds / done
    cpu_seconds: float = 0.0        # CPU time of the image tasks, summed
    startup_seconds: float = 0.0    # starting the local cluster
    threshold: float = 0.0          # defect-pixel count (source pixels) above which an image is flagged
    threshold_from: str = ""
    downsample: int = 1
    tta: bool = False
    csv: str = ""
    errors: list = field(default_factory=list)

    def summary(self) -> str:
        spi = f"{self.seconds_per_image:.3f} s per image" if self.done else "no image computed"
        return (f"{self.output}: {self.images} images: {self.done} done, {self.skipped} skipped (already done), "
                f"{self.failed} failed; {self.flagged} flagged (defect pixels > {self.threshold:g}, "
                f"{self.threshold_from}); {spi} ({self.seconds:.1f} s, {self.cpu_seconds:.1f} CPU s; down-sampling "
                f"{self.downsample}{', TTA x8' if self.tta else ''}); {self.csv}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Job:
    """What an image task needs besides the engine (pickled to the workers)."""
    folder: str
    output: str
    downsample: int
    block: tuple
    input_dtype: str | None
    defect: tuple  # class ids counted as defect


def image_task(engine: Engine, job: _Job, rel: str, mask_rel: str) -> dict:
    """Segment one image file and write its mask, then its done marker. Runs on a worker."""
    from ..data.ingest import downsample_image
    t0, c0 = time.perf_counter(), time.process_time()
    src = Path(job.folder) / rel
    img = read_image(src, engine.net.in_channels, job.input_dtype)
    H, W = img.shape[1:]
    f = job.downsample
    if H < f or W < f:
        raise DataError(f"{src}: {H}x{W} is smaller than the model's down-sampling factor {f}")
    small = downsample_image(img, f)
    h, w = small.shape[1:]
    K = engine.net.n_classes
    labels = np.empty((h, w), np.uint8)
    score = 0.0

    def read(z0, z1, yr, xr):
        return small[None, :, yr[0]:yr[1], xr[0]:xr[1]]

    for b in block_grid((1, h, w), (1, *job.block)):
        probs, lab = compute_block(engine, read, b, lambda z: (h, w))
        labels[slice(*b.y), slice(*b.x)] = lab[0]
        p_defect = probs[list(job.defect), 0].sum(axis=0)
        score = max(score, float(p_defect.max()))
    full = upsample_labels(labels, f, (H, W))
    png = png_bytes(full)
    atomic_write(Path(job.output) / "masks" / mask_rel, png)
    counts = np.bincount(full.ravel(), minlength=K)
    marker = {"image": rel, "mask": f"masks/{mask_rel}", "height": int(H), "width": int(W),
              "defect_pixels": int(sum(counts[k] for k in job.defect)),
              "model_defect_pixels": int(sum((labels == k).sum() for k in job.defect)),
              "class_pixels": [int(c) for c in counts[:K]], "max_probability": round(score, 6),
              "source": source_stamp(src), "mask_crc32": zlib.crc32(png), "mask_bytes": len(png),
              "seconds": time.perf_counter() - t0}
    marker["cpu_seconds"] = time.process_time() - c0
    atomic_write(_marker_path(Path(job.output), mask_rel), json.dumps(marker).encode())
    marker["pid"] = os.getpid()
    return marker


def _marker_path(out: Path, mask_rel: str) -> Path:
    return out / ".done" / (mask_rel + ".json")


def mask_intact(out: Path, m: dict) -> bool:
    """The marker's mask file is there and byte for byte what the task wrote (CRC-32 of the PNG recorded in the
    marker): a mask truncated or edited since is not done."""
    try:
        data = (out / m["mask"]).read_bytes()
    except (OSError, KeyError, TypeError):
        return False
    return "mask_crc32" in m and len(data) == m.get("mask_bytes") and zlib.crc32(data) == m["mask_crc32"]


def _read_marker(out: Path, mask_rel: str, src: Path) -> dict | None:
    """The done marker of an image, if its mask is intact and its source is unchanged since."""
    try:
        m = json.loads(_marker_path(out, mask_rel).read_text())
        if m["source"] == source_stamp(src) and mask_intact(out, m):
            return m
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def verify_folder(out) -> tuple[int, list[str]]:
    """(done images, problems) of a folder-inference output: every done marker's mask read back against its
    checksum (for ``mpfpipe info --verify``)."""
    out = Path(out)
    problems, n = [], 0
    for marker in sorted((out / ".done").rglob("*.json")):
        try:
            m = json.loads(marker.read_text())
        except (OSError, ValueError):
            problems.append(f"{marker}: unreadable done marker")
            continue
        n += 1
        if not mask_intact(out, m):
            problems.append(f"{out / str(m.get('mask'))} (of {m.get('image')}) is missing or damaged (checksum "
                            "mismatch)")
    return n, problems


def read_state(out: Path) -> dict | None:
    try:
        doc = json.loads((out / STATE).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("format") == FORMAT else None


def _prepare(out: Path, settings: dict, overwrite: bool) -> None:
    """Create OUTDIR, or continue it when it was made with the same settings; ``overwrite`` empties an OUTDIR
    that mpfpipe made (only that: `mpfpipe._safety`)."""
    import shutil
    state = read_state(out)
    if state is None and overwrite and _safety.recognise(out) == "folder-segmentation":
        _safety.remove(out)  # the claimed leftover of a run that failed before its state file (checked: ours)
    if state is not None and (overwrite or state.get("settings") != settings):
        if not overwrite:
            old = state.get("settings", {})
            diff = [k for k in settings if old.get(k) != settings[k]]
            raise OutputExistsError(f"{out} holds masks made with different settings ({', '.join(diff)}); pass "
                                    "--overwrite to start again or choose another output")
        for name in ("masks", ".done", "detections.csv", STATE):
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    if read_state(out) is None:
        _safety.claim(out, "folder-segmentation")  # a run dying before the state file is written stays ours
        atomic_write(out / STATE, json.dumps({"format": FORMAT, "mpfpipe_version": __version__,
                                               "settings": settings, "complete": False}, indent=2).encode())
        _safety.release(out)


def _detection_threshold(model, detect_threshold, f: int) -> tuple[float, str]:
    if detect_threshold is not None:
        return float(detect_threshold), "--detect-threshold"
    det = model.detection
    if det is not None:
        t = float(det["threshold"]) * f * f
        return t, (f"the model's rule: {float(det['threshold']):g} pixels at its resolution"
                   + (f" x {f}^2" if f > 1 else "") + f", chosen on {det.get('chosen_on', '?')}")
    return 0.0, "no rule in the model: any defect pixel"


@_lock.locked("output", "segmentation")
def segment_folder(model, folder, output, *, block=None, workers: int | None = None,
                   threads: int | None = None, scheduler: str | None = None, overwrite: bool = False,
                   threshold: float | None = None, positive: int = 1, progress: bool = True,
                   dtype: str = "float32", tta: bool = False, detect_threshold: float | None = None,
                   include=(), exclude=()) -> FolderResult:
    """Segment every image file under ``folder`` into ``output`` (see the module doc). ``block``: (1, by, bx)
    tiles of the down-sampled image per forward pass (bounds memory; the result does not depend on it; None:
    `blocks.DEFAULT_BLOCK`); ``threshold`` / ``positive``: label = p[positive] > threshold instead of the arg-max;
    ``detect_threshold``: flag images with more defect pixels than this (source pixels) instead of the model's
    rule; ``include`` / ``exclude``: globs on the path relative to ``folder`` (e.g. ``*.jpg``)."""
    from ..model import load_model, model_record
    from ..options import check as check_options

    check_options("segment", locals())
    model_path, folder, out = Path(model), Path(folder), Path(output)
    mdl = load_model(model_path)
    K = mdl.net.n_classes
    if not folder.is_dir():
        raise DataError(f"input folder {folder} not found")
    if mdl.section_context:
        raise DataError(f"the model reads {mdl.section_context} neighbouring section(s) each side; {folder} is a "
                        "folder of separate images: give it a stack (TIFF, Zarr or HDF5)")
    # never inside the input folder, never over a folder mpfpipe did not write (ours resumes or is replaced below)
    _safety.check_outputs([("output", out, ("folder-segmentation",))], inputs=[model_path, folder], overwrite=True)
    det = mdl.detection or {}
    if threshold is None and K == 2 and det.get("probability") is not None:
        threshold = float(det["probability"])  # the probability the rule's counts were taken at
    pos = int(det.get("positive", positive)) if threshold is None else positive
    if not 0 <= pos < K:
        raise DataError(f"positive class {pos} is not a class of this {K}-class model")
    defect = (pos,) if K == 2 else tuple(range(1, K))
    f = int(mdl.downsample)
    tile = tuple(int(b) for b in (DEFAULT_BLOCK if block is None else block))[-2:]
    if len(tile) != 2 or min(tile) < 1:
        raise DataError(f"block must be positive sizes (y, x), got {block!r}")
    rels = find_images(folder, include, exclude, skip=out)
    if not rels:
        raise DataError(f"no JPEG, PNG or TIFF images found under {folder}"
                        + (f" matching {', '.join(include)}" if include else ""))
    masks = mask_names(rels)
    mmeta = model_record(model_path)
    settings = {"model_sha256": mmeta["sha256"], "input": str(folder.absolute()), "downsample": f,
                "threshold": threshold, "positive": pos, "tta": bool(tta), "dtype": dtype}
    _prepare(out, settings, overwrite)
    prov = mdl.provenance or {}
    job = _Job(str(folder.absolute()), str(out.absolute()), f, tile,
               prov.get("input_dtype") if isinstance(prov, dict) else None, defect)
    engine = Engine(mdl.net, mdl.params, mdl.normalisation, dtype=dtype, threshold=threshold, positive=pos,
                    tta=bool(tta))
    results: dict[str, dict] = {}
    for r in rels:
        m = _read_marker(out, masks[r], folder / r)
        if m is not None:
            results[r] = m
    todo = [r for r in rels if r not in results]
    res = FolderResult(str(out), images=len(rels), skipped=len(results), downsample=f, tta=bool(tta))
    errors: dict[str, str] = {}
    if todo:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(rels), initial=len(results), unit="image", disable=not progress,
                   desc="resuming" if results else "segment")
        try:
            for rel, outcome, t_start, t_end in _run(engine, job, todo, masks, workers, threads, scheduler):
                res.startup_seconds = t_start
                res.seconds = t_end
                if isinstance(outcome, BaseException):
                    msg = str(outcome) if isinstance(outcome, MpfError) else \
                        f"{folder / rel}: {type(outcome).__name__}: {outcome}"
                    errors[rel] = msg
                    res.errors.append(msg)
                    for stale in (_marker_path(out, masks[rel]), out / "masks" / masks[rel]):
                        stale.unlink(missing_ok=True)  # an earlier result of a source that now fails
                else:
                    results[rel] = outcome
                    res.done += 1
                    res.cpu_seconds += outcome["cpu_seconds"]
                bar.update(1)
        finally:
            bar.close()
    res.failed = len(errors)
    res.seconds_per_image = res.seconds / res.done if res.done else 0.0
    res.threshold, res.threshold_from = _detection_threshold(mdl, detect_threshold, f)
    res.flagged = sum(1 for m in results.values() if m["defect_pixels"] > res.threshold)
    res.csv = str(_write_csv(out / "detections.csv", rels, results, errors, res.threshold))
    summary = {k: v for k, v in res.to_dict().items() if k != "errors"}
    atomic_write(out / STATE, json.dumps({"format": FORMAT, "mpfpipe_version": __version__, "settings": settings,
                                           "model": mmeta, "complete": not errors, "summary": summary,
                                           "errors": res.errors}, indent=2, default=str).encode())
    if errors:
        first = next(iter(errors.values()))
        raise FolderSegmentError(f"{len(errors)} of {len(rels)} images failed (first: {first}); the others have "
                                 f"their masks and rows in {res.csv}; rerun the same command to retry the failed "
                                 f"ones", result=res)
    return res


def _write_csv(path: Path, rels, results: dict, errors: dict, threshold: float) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rels:
        m = results.get(r)
        if m is None:
            w.writerow([r, "", "", "", "", "", errors.get(r, "not done")])
        else:
            w.writerow([r, m["height"], m["width"], m["defect_pixels"], int(m["defect_pixels"] > threshold),
                        m["max_probability"], ""])
    atomic_write(path, buf.getvalue().encode())
    return path


def _run(engine, job, todo, masks, workers, threads, scheduler):
    """Yield (image, marker or exception, startup seconds, seconds since the first submit) as images finish."""
    with task_runner(workers, threads, scheduler) as runner:
        t1 = time.perf_counter()
        eng = runner.scatter(engine)
        futures = {runner.submit(image_task, eng, job, rel, masks[rel], key=f"mpf-image-{i}-{time.time_ns()}"): rel
                   for i, rel in enumerate(todo)}
        for fut, out in runner.completed(futures):
            yield futures[fut], out, runner.startup, time.perf_counter() - t1
