"""Whole-volume segmentation on Dask: blockwise, resumable, with a progress bar and an end summary.

``segment(model, input, output)`` opens the input (`volume.open_volume`), checks it against the model (channels,
voxel type) before any work, creates or resumes the OME-Zarr output (`omezarr`), then runs the blocks that are
not yet marked done, a few consecutive ones per task (`tasks.blocks_task`). For each block a task reads the block
plus halo from the input, runs the dense forward pass (`blocks.forward_block`) and writes the block's own chunks
and then its done marker; reads and writes run in a helper thread beside the forward passes. The pyramid's blocks
(`pyramid`) run in the same task graph, each once its 2 x 2 source blocks of the level below are done; a level-1
block is made in the task of its level-0 sources, from them in memory, when the volume has blocks enough to keep
every worker busy with whole source sets per task (reading level 0 back cost ~1 % of segment's time). The group
is marked complete at the end, when every block of every level is done. Resuming is automatic: an incomplete
output made from the same model, input and options is continued (done blocks are skipped); a complete output, or
one made differently, is replaced only with ``overwrite=True``.

Cluster: by default a `LocalCluster` of worker processes on 127.0.0.1 (``workers`` processes, each running one
block at a time with ``threads`` kernel threads: workers x threads = cores); ``scheduler`` joins an existing
cluster (address or scheduler file; the input and output paths must then be visible to the workers);
``workers=0`` runs every block in this process without Dask (debugging, small jobs).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__, _lock, _safety
from ..cluster import task_runner
from ..errors import DataError, MpfError, OutputExistsError, SegmentError
from . import omezarr, pyramid, verify
from .blocks import Engine, block_grid, default_block
from .tasks import blocks_task, group_size, group_units, level_task
from ..data.volume import Volume, open_volume


@dataclass
class SegmentResult:
    output: str
    blocks: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    voxels: int = 0
    voxels_per_s: float = 0.0
    cpu_seconds: float = 0.0  # CPU time of the block tasks (all their threads), summed over blocks
    forward_seconds: float = 0.0  # wall time of the blocks' forward passes (normalise, net, softmax, labels)
    io_seconds: float = 0.0  # wall time of their reads and writes, in a helper thread beside the forward passes
    levels: int = 1  # pyramid levels, level 0 included
    pyramid_blocks: int = 0  # blocks of levels 1, 2, ... (done, skipped, failed as for level 0 above)
    pyramid_done: int = 0
    pyramid_skipped: int = 0
    pyramid_cpu_seconds: float = 0.0
    peak_memory_per_worker: dict = field(default_factory=dict)  # worker -> peak RSS bytes
    errors: list = field(default_factory=list)

    def summary(self) -> str:
        mem = max(self.peak_memory_per_worker.values(), default=0) / 2**20
        return (f"{self.output}: {self.blocks} blocks: {self.done} done, {self.skipped} skipped (already done), "
                f"{self.failed} failed; {self.voxels} voxels in {self.seconds:.1f} s = {self.voxels_per_s:,.0f} "
                f"voxels/s ({self.cpu_seconds:.1f} CPU s in blocks, {self.forward_seconds:.1f} s in forward passes, "
                f"{self.io_seconds:.1f} s of reads and writes beside them); {self.levels} level(s), pyramid "
                f"{self.pyramid_done} blocks done, {self.pyramid_skipped} skipped ({self.pyramid_cpu_seconds:.1f} "
                f"CPU s); peak memory per worker {mem:.0f} MiB")

    def to_dict(self) -> dict:
        return asdict(self)


def _check_compatible(model, volume):
    """``volume`` as the model reads it (with its section context), or DataError naming what does not fit."""
    net = model.net
    volume = _with_context(model, volume)
    if volume.channels != net.in_channels:
        raise DataError(f"the model expects {net.in_channels} channel(s) but {volume.path} has {volume.channels}"
                        + ("; give a (Z, C, Y, X) array for multi-channel models" if net.in_channels > 1 else ""))
    norm = model.normalisation or {}
    if len(norm.get("mean", [0.0])) != net.in_channels:
        raise DataError(f"the model's normalisation has {len(norm.get('mean', []))} channel(s), the net "
                        f"{net.in_channels}: the model file is inconsistent")
    prov = model.provenance or {}
    want = prov.get("input_dtype") or (prov.get("dataset") or {}).get("dtype") if isinstance(prov, dict) else None
    if want and np.dtype(want) != np.dtype(volume.dtype):
        raise DataError(f"the model was trained on {np.dtype(want)} images but {volume.path} holds "
                        f"{np.dtype(volume.dtype)}: convert the volume to {np.dtype(want)} (the normalisation is in "
                        f"its units)")
    f = int(getattr(model, "downsample", 1) or 1)
    have = int(((volume.info.get("dataset") or {}).get("downsample")) or 1) if volume.kind == "dataset" else None
    if f > 1 and have != f:
        raise DataError(f"the model was trained on images down-sampled by {f} but {volume.path} is "
                        + (f"a dataset down-sampled by {have}" if have else "not down-sampled")
                        + f": ingest it with --downsample {f}, or segment a folder of image files "
                          f"(`mpfpipe segment MODEL FOLDER OUTDIR` down-samples them itself)")
    lo = min(volume.shape[1], volume.shape[2]) if volume.sizes is None else \
        min(min(h, w) for h, w in volume.sizes)
    if lo < 1:
        raise DataError(f"{volume.path} has an empty slice")
    return volume


def _with_context(model, volume):
    """A model with section context K reads a plain stack with its neighbours stacked as channels, or a dataset
    ingested with the same K as it is."""
    from ..data.context import CONTEXT_KEY
    k = model.section_context
    have = ((volume.info.get("dataset") or {}).get(CONTEXT_KEY) or {}).get("sections", 0)
    if have and have != k:
        raise DataError(f"{volume.path} was ingested with section context {have}, but the model reads {k} "
                        f"section(s) each side" + ("" if k else " (none)") + ": segment the source stack instead")
    if not k or have or volume.section_context == k:  # a Volume given already read with the model's context
        return volume
    layout = (volume.info.get("dataset") or {}).get("layout")
    if volume.kind == "dataset" and layout not in (None, "stack"):
        raise DataError(f"the model reads {k} neighbouring section(s) each side, but {volume.path} was ingested from "
                        f"a {layout} of separate images, not a stack of sections")
    if volume.channels * (2 * k + 1) != model.net.in_channels:
        raise DataError(f"the model reads {k} section(s) above and below each section ({model.net.in_channels} maps "
                        f"= {model.net.in_channels // (2 * k + 1)} channel(s) x {2 * k + 1} sections) but {volume.path}"
                        f" has {volume.channels} channel(s)")
    return volume.with_section_context(k)


def _settings(model_meta: dict, volume, chunk, quantize, threshold, positive, levels, tta) -> dict:
    out = {"model_sha256": model_meta["sha256"], "input": volume.path, "input_array": volume.array,
           "input_shape": list(volume.shape), "block": list(chunk), "quantized": bool(quantize),
           "threshold": threshold, "positive": positive, "levels": levels}
    if tta:  # only when on: outputs made before TTA existed keep resuming
        out["tta"] = True
    return out


def _prepare_output(output: Path, settings: dict, overwrite: bool, create) -> bool:
    """Create the output, or decide to resume it. Returns True when resuming; a resumed output's own block then
    replaces ``settings["block"]`` (the only setting that may differ)."""
    state = omezarr.output_state(output)
    if state is None:
        create()
        return False
    if overwrite:
        omezarr.remove_output(output)
        create()
        return False
    if state.get("foreign"):
        raise OutputExistsError(f"{output} exists and is not an mpfpipe segmentation; pass --overwrite to replace "
                                f"it or choose another output")
    old = state.get("settings", {})
    diff = [k for k in settings if old.get(k) != settings[k]]
    if "block" in diff and len(old.get("block") or ()) == 3:
        # the result does not depend on the block: the output keeps its own (e.g. an older default's)
        settings["block"] = list(old["block"])
        diff.remove("block")
    if state.get("complete") and (diff or not verify.repair(output)):  # damaged blocks: recomputed below
        raise OutputExistsError(f"{output} is a complete segmentation; pass --overwrite to recompute it")
    if diff:
        raise OutputExistsError(f"{output} is an unfinished segmentation made with different settings "
                                f"({', '.join(diff)}); pass --overwrite to start again")
    if not state.get("complete"):
        verify.repair(output)  # a done block whose chunks were lost since is done again
    return True


@_lock.locked("output", "segmentation")
def segment(model, input, output, *, block=None, workers: int | None = None, threads: int | None = None,
            scheduler: str | None = None, overwrite: bool = False, quantize: bool = False,
            threshold: float | None = None, positive: int = 1, progress: bool = True,
            dtype: str = "float32", levels: int | None = None, tta: bool = False,
            detect_threshold: float | None = None, include=(), exclude=()) -> SegmentResult:
    """Segment a whole volume into an OME-Zarr output; see the module doc. ``model`` is a model file path,
    ``input`` a Zarr array / OME-Zarr image / dataset / TIFF path (or a `Volume`), ``block`` (bz, by, bx) (None:
    `blocks.default_block` of the net; an existing output keeps its own, since the result does not depend on it);
    ``levels``: pyramid levels including level 0 (None: halve y, x until the smaller side is <= 256; 1: none);
    ``tta``: average the probabilities over the 8 flips and 90-degree turns (`blocks.region_probs`).

    A folder of image files (searched recursively) is segmented image by image instead: see `folder.segment_folder`
    (``output`` is then a folder of PNG masks and ``detections.csv``; ``detect_threshold``, ``include`` and
    ``exclude`` apply to folders only)."""
    from ..model import load_model, model_record
    from ..options import check as check_options
    from .folder import segment_folder
    from .imagefiles import is_image_folder

    check_options("segment", locals())
    if not isinstance(input, Volume) and is_image_folder(input):
        if quantize or levels is not None:
            raise DataError(f"{input} is a folder of images: {'--quantize' if quantize else '--levels'} applies to "
                            "volumes (OME-Zarr outputs) only")
        return segment_folder(model, input, output, block=block, workers=workers, threads=threads,
                              scheduler=scheduler, overwrite=overwrite, threshold=threshold, positive=positive,
                              progress=progress, dtype=dtype, tta=tta, detect_threshold=detect_threshold,
                              include=include, exclude=exclude)
    if detect_threshold is not None or include or exclude:
        raise DataError(f"{input} is not a folder of images: --detect-threshold, --include and --exclude apply to "
                        "folder inputs only")
    model_path = Path(model)
    mdl = load_model(model_path)
    volume = _check_compatible(mdl, open_volume(input))
    if block is None:
        block = default_block(mdl.net.ndim)
    if len(block) != 3 or any(int(b) < 1 for b in block):
        raise DataError(f"block must be three positive sizes (z, y, x), got {block!r}")
    if mdl.net.ndim == 3:
        volume = _uniform_sections(volume)
    if volume.sizes is not None and block[0] != 1:
        block = (1, *block[1:])  # dataset images differ in size: one image per z block
    chunk = tuple(min(int(b), n) for b, n in zip(block, volume.shape))
    most = pyramid.auto_levels(volume.shape, min_side=1)
    if levels is None:
        levels = pyramid.auto_levels(volume.shape)
    elif not isinstance(levels, (int, np.integer)) or not 1 <= levels <= most:
        raise DataError(f"levels must be an integer from 1 to {most} for a volume of {volume.shape[1]} x "
                        f"{volume.shape[2]} pixels (halving until one side is 1 pixel), got {levels!r}")
    levels = int(levels)
    known = bool(volume.units) or list(volume.scale) != [1.0, 1.0, 1.0]  # a voxel size the input records
    zlevels = pyramid.z_levels(levels, volume.scale, volume_net=mdl.net.ndim == 3 and not volume.two_d,
                               known=known)
    if threshold is not None and not 0 <= positive < mdl.net.n_classes:
        raise DataError(f"positive class {positive} is not a class of this {mdl.net.n_classes}-class model")
    output = Path(output)
    # never write over / into an input, nor over anything that is not an mpfpipe segmentation (mpfpipe._safety)
    _safety.check_outputs([("output", output, ("segmentation",))], inputs=[model_path, volume.path], overwrite=True)
    mmeta = model_record(model_path)
    settings = _settings(mmeta, volume, chunk, quantize, threshold, positive, levels, bool(tta))
    if zlevels:  # only when some: outputs of 2D models keep resuming
        settings["z_levels"] = list(zlevels)
    meta = {"model": mmeta, "settings": settings, "mpfpipe_version": __version__,
            "input": {"path": volume.path, "kind": volume.kind, "array": volume.array, "shape": list(volume.shape),
                      "channels": volume.channels, "dtype": volume.dtype, "sizes": volume.sizes,
                      "scale": volume.scale, "units": volume.units, **volume.info,
                      **({"section_context": volume.section_context} if volume.section_context else {})}}
    resumed = _prepare_output(output, settings, overwrite, lambda: omezarr.create_output(
        output, volume=volume, block=chunk, class_names=mdl.class_names, quantize=quantize, meta=meta,
        levels=levels, zlevels=zlevels))
    chunk = tuple(settings["block"])  # a resumed output's own (`_prepare_output`)

    blocks = block_grid(volume.shape, chunk)
    done = omezarr.read_done(output)
    todo = [b for b in blocks if not done[b.index]]
    result = SegmentResult(str(output), blocks=len(blocks), skipped=len(blocks) - len(todo), levels=levels)
    tasks = [(0, b) for b in todo]
    for lv in range(1, levels):
        lblocks = pyramid.level_blocks(volume.shape, chunk, lv, zlevels)
        ldone = omezarr.read_done(output, lv)
        ltodo = [b for b in lblocks if not ldone[b.index]]
        result.pyramid_blocks += len(lblocks)
        result.pyramid_skipped += len(lblocks) - len(ltodo)
        tasks += [(lv, b) for b in ltodo]
    engine = Engine(mdl.net, mdl.params, mdl.normalisation, dtype=dtype, threshold=threshold, positive=positive,
                    tta=bool(tta))
    voxels_of = _voxel_counter(volume)
    t0 = time.perf_counter()
    if tasks:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(blocks) + result.pyramid_blocks, initial=result.skipped + result.pyramid_skipped,
                   unit="block", disable=not progress, desc="resuming" if resumed else "segment")
        try:
            token = omezarr.output_state(output)["token"]
            for level, block_, outcome in _run(engine, volume, str(output.absolute()), token, tasks, chunk,
                                               workers, threads, scheduler, zlevels):
                if isinstance(outcome, BaseException):
                    result.failed += 1
                    result.errors.append(f"{'block' if level == 0 else f'level {level} block'} {block_.index}: "
                                         f"{type(outcome).__name__}: {outcome}")
                elif level:
                    result.pyramid_done += 1
                    result.pyramid_cpu_seconds += outcome["cpu_seconds"]
                else:
                    result.done += 1
                    result.voxels += voxels_of(block_)
                    result.cpu_seconds += outcome["cpu_seconds"]
                    result.forward_seconds += outcome.get("forward_seconds", 0.0)
                    result.io_seconds += outcome.get("read_seconds", 0.0) + outcome.get("write_seconds", 0.0)
                if not isinstance(outcome, BaseException):
                    key = f"pid{outcome['pid']}"
                    result.peak_memory_per_worker[key] = max(result.peak_memory_per_worker.get(key, 0),
                                                             outcome["peak_rss"])
                bar.update(1)
        finally:
            bar.close()
    result.seconds = time.perf_counter() - t0
    result.voxels_per_s = result.voxels / result.seconds if result.seconds > 0 else 0.0
    if result.failed:
        raise SegmentError(f"{result.failed} of {len(tasks)} blocks failed (first: {result.errors[0]}); the output "
                           f"is incomplete: rerun the same command to retry the failed blocks")
    if not all(omezarr.read_done(output, lv).all() for lv in range(levels)):  # pragma: no cover - defensive
        raise SegmentError(f"{output}: some blocks are not marked done; rerun to finish")
    omezarr.set_complete(output, True, summary={k: v for k, v in result.to_dict().items() if k != "errors"})
    return result


def _uniform_sections(volume):
    """A 3D model reads blocks across sections, so every section must be the volume's full size (a dataset of
    separate images that all have one size qualifies)."""
    if volume.sizes is None:
        return volume
    if any(tuple(s) != tuple(volume.shape[1:]) for s in volume.sizes):
        raise DataError(f"{volume.path}: its images differ in size; a 3D model segments a volume of equal sections "
                        "(ingest the stack with --volume)")
    volume.sizes = None
    return volume


def _voxel_counter(volume):
    def count(block) -> int:
        n = 0
        for z in range(*block.z):
            H, W = volume.slice_size(z)
            n += max(0, min(block.y[1], H) - block.y[0]) * max(0, min(block.x[1], W) - block.x[0])
        return n
    return count


def _run(engine, volume, out_path, token, tasks, chunk, workers, threads, scheduler, zlevels=()):
    """Yield (level, block, result dict or exception) as blocks finish. ``tasks``: (level, block) pairs, levels
    ascending; level-0 blocks run a few per task (`tasks.blocks_task`), a pyramid block waits for the tasks of its
    sources among them (the others are done already). In this process (``workers=0``) a block's exception that is
    not an `MpfError` is a bug, not bad data: it surfaces here (no Dask to report it)."""
    level0 = [b for level, b in tasks if level == 0]
    blocks_by_index = {b.index: b for b in level0}
    with task_runner(workers, threads, scheduler) as runner:
        eng = runner.scatter(engine)
        futures, by_index = {}, {}
        stamp = time.time_ns()
        # level-1 blocks are made in the task of their level-0 sources (no read back from disk), unless whole
        # source sets per task would leave too few tasks to keep every slot busy (small volumes)
        units, inline = pyramid.level1_units(volume.shape, chunk, level0, [b for lv, b in tasks if lv == 1],
                                              zlevels)
        if max((len(u) for u in units), default=1) > group_size(len(level0), runner.slots()):
            units, inline = [[b] for b in level0], {}
        parent_of = {tuple(i): idx for idx, (_, needed) in inline.items() for i in needed}
        for group in group_units(units, runner.slots()):
            mine = {parent_of[tuple(b.index)] for b in group if tuple(b.index) in parent_of}
            key = f"mpf-blocks-{token}-0-{'-'.join(map(str, group[0].index))}-{len(group)}-{stamp}"
            fut = runner.submit(blocks_task, eng, volume, out_path, token, group, {i: inline[i] for i in mine},
                                retries=1, key=key)
            futures[fut] = (0, [(0, b) for b in group] + [(1, inline[i][0]) for i in sorted(mine)])
            for b in group:
                by_index[(0, b.index)] = fut
            for i in mine:
                by_index[(1, i)] = fut
        for level, b in tasks:
            if level == 0 or (level == 1 and b.index in inline):
                continue
            key = f"mpf-block-{token}-{level}-{'-'.join(map(str, b.index))}-{stamp}"
            needed = pyramid.source_indices(volume.shape, chunk, level, b, zlevels)
            deps = list(dict.fromkeys(by_index[(level - 1, i)] for i in needed if (level - 1, i) in by_index))
            fut = runner.submit(level_task, out_path, volume.two_d, token, level, b, needed, level in zlevels,
                                *deps, retries=1, key=key)
            futures[fut] = (level, b)
            by_index[(level, b.index)] = fut
        by_index.clear()  # the scheduler keeps what the pyramid tasks still need
        for fut, result in runner.completed(futures):
            level, what = futures[fut]
            if isinstance(result, BaseException):
                if runner.local and not isinstance(result, MpfError):
                    raise result
                for lv, b in (what if level == 0 else [(level, what)]):
                    yield lv, b, result
            elif level == 0:
                for r in result:
                    err = r.get("error")
                    if runner.local and err is not None and not isinstance(err, MpfError):
                        raise err
                    lv = r.get("level", 0)
                    b = blocks_by_index[r["index"]] if lv == 0 else inline[r["index"]][0]
                    yield lv, b, err if err is not None else r
            else:
                yield level, what, result
