"""Instance segmentation of a finished segmentation output: objects with one id each, the same id across blocks.

    from mpfpipe.segment.instances import label_instances
    result = label_instances("seg.ome.zarr", merge_threshold=0.4)   # writes labels/instances

Three passes over a block grid (y, x tiles of ``block`` per z block), each block writing only its own files:

1. **fragments** (a Dask task per block): the membrane probability of the block plus a context ``margin`` is cut
   into objects section by section (`fragments.section_instances`); the objects met in the block's core get
   block-local ids 1..n (section by section, raster order). The block writes its core ids, then a file with n,
   its labelling of a strip of width 2w around each face (w = min(margin / 2, the two blocks' sizes): there both
   blocks' labellings have at least margin / 2 pixels of context; the whole margin let a block's truncated
   objects at its outer edge join cells, 0.14 bits of VOI merge between block sizes on ISBI), and with
   ``link_slices`` the pairs of objects of consecutive sections that overlap on more than ``link_overlap`` of the
   smaller one, then its done marker.
2. **union-find** (the driver, once): provisional id = local id + the block's offset (the cumulative counts in
   grid order). Across each face the two blocks labelled the same strip; objects that overlap there on more than
   half of the smaller one (on cell pixels, p < threshold) are one object; with ``link_slices`` the z-links within
   and across z blocks are added. One scipy connected_components over this graph numbers the objects 1..N in
   order of their first provisional id; the mapping is saved.
3. **relabel** (a task per block) writes the final ids, its checksum, then its done marker; the pyramid's levels
   follow, block by block (mode of 2 x 2 windows).

Offsets and numbering depend only on the grid, so any number of workers gives the same ids. A killed run resumes:
blocks with a marker are skipped, the mapping is reused. A complete result whose chunks were damaged since is
repaired by the same call (`verify.repair_instances`): the damaged blocks, and only they, are written again.
The whole result is written under ``labels/instances`` (see `instance_store`); the work folder is removed at the
end.
"""
from __future__ import annotations

import contextlib

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import _lock, _stop
from ..errors import DataError, MpfError, OutputExistsError
from ..values import parse_block
from . import instance_store as store
from .blocks import block_grid, grid_shape
from ..data.watershed import DEFAULTS, PARAMS, overlap_pairs, union
from .instance_tasks import fragment_task, level_task, relabel_task
from .verify import repair_instances

FACE_OVERLAP = 0.5  # two labellings of the same strip: the same object when it covers most of the smaller one
# The default block's sides in y and x: the segmentation's, times the smallest whole factor that reaches this. Each
# block computes its core plus a context margin on every side, so with the default margin (32) a 512^2 core
# computes 1.27x its pixels and a 1024^2 core 1.13x: on 2 x 2048^2 ISBI sections the step's CPU time fell 19 %
# (fragments 11 %, the relabelling pass by half: a quarter of the tasks).
MIN_BLOCK_SIDE = 1024


def default_block(segmentation_block) -> tuple[int, int, int]:
    """The instance step's block when none is given: the segmentation's ``(bz, by, bx)`` with by and bx each
    multiplied by the smallest whole number that makes them at least `MIN_BLOCK_SIDE` (whole multiples: a core
    then spans whole probability chunks)."""
    blk = tuple(int(b) for b in segmentation_block)
    if len(blk) != 3 or min(blk) < 1:  # refused by the caller, with the block as given
        return blk
    return (blk[0], *(b * max(1, -(-MIN_BLOCK_SIDE // b)) for b in blk[1:]))


@dataclass
class InstanceResult:
    output: str
    blocks: int = 0
    done: int = 0
    skipped: int = 0
    n_objects: int = 0
    seconds: float = 0.0
    # CPU seconds by pass: fragments (1), union (2, the driver), relabel (3) and pyramid (its levels)
    cpu_seconds: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)

    def summary(self) -> str:
        cpu = ", ".join(f"{k} {v:.1f}" for k, v in self.cpu_seconds.items())
        return (f"{self.output} labels/instances: {self.n_objects} objects; {self.blocks} blocks: {self.done} done, "
                f"{self.skipped} skipped (fragments already done); {self.seconds:.1f} s"
                + (f" (CPU s by pass: {cpu})" if cpu else ""))

    def to_dict(self) -> dict:
        return asdict(self)


class InstanceError(MpfError):
    """Some instance blocks failed; the output is left incomplete and a rerun retries them."""


def _params(meta: dict, given: dict) -> dict:
    """Options given (not None) win over the model's ``instances`` metadata, which wins over the defaults."""
    from ..model import read_metadata
    from ..options import check
    model_path = (meta.get("model") or {}).get("path")
    from_model = {}
    if model_path and Path(model_path).is_file():
        from_model = {k: v for k, v in (read_metadata(model_path).get("instances") or {}).items() if k in PARAMS}
        if from_model and "agglomeration" not in from_model:  # chosen before hierarchical merging existed: as then
            from_model = {"agglomeration": "one-shot", "merge_score": "mean", **from_model}
    out = {**DEFAULTS, **from_model, **{k: v for k, v in given.items() if v is not None}}
    check("instances", out, where="instances: ")
    require_classifier(out)
    return out


def require_classifier(p: dict) -> None:
    """merge_score 'learned' without a fitted classifier: refused here, before any block runs (one line)."""
    if p.get("merge_score") == "learned":
        from ..data.agglomerate import classifier_array
        classifier_array(p.get("merge_classifier"))


def _membrane_class(meta: dict, positive, what: str = "the segmentation") -> int:
    names = meta.get("class_names") or []
    if len(names) < 2:
        raise DataError(f"{what} has {len(names)} class(es) ({', '.join(map(str, names)) or 'none'}): "
                        "instances need a membrane (boundary) class besides the cells")
    pos = int((meta.get("settings") or {}).get("positive", 1) if positive is None else positive)
    if not 0 <= pos < len(names):
        raise DataError(f"membrane class {pos} is not one of the {len(names)} classes of {what} "
                        f"({', '.join(map(str, names))})")
    return pos


def _union_find(out: str, blocks: list, grid, p: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pass 2: (offsets per block in grid order, counts, final id of every provisional id)."""
    data = {b.index: np.load(store.block_file(out, b.index)) for b in blocks}
    counts = np.array([int(data[b.index]["n"]) for b in blocks], np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    off = {b.index: int(o) for b, o in zip(blocks, offsets)}
    ea, eb = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for b in blocks:
        d = data[b.index]
        for axis in (1, 2):
            nb = list(b.index)
            nb[axis] += 1
            if nb[axis] >= grid[axis]:
                continue
            e = data[tuple(nb)]
            a_ids, b_ids = overlap_pairs(d[f"hi{axis}"], e[f"lo{axis}"], d[f"hi{axis}_cell"] & e[f"lo{axis}_cell"],
                                         FACE_OVERLAP)
            ea.append(a_ids + off[b.index])
            eb.append(b_ids + off[tuple(nb)])
        if p["link_slices"]:
            if "links" in d.files:
                ea.append(d["links"][:, 0] + off[b.index])
                eb.append(d["links"][:, 1] + off[b.index])
            nz = (b.index[0] + 1, *b.index[1:])
            if nz[0] < grid[0]:
                e = data[nz]
                a_ids, b_ids = overlap_pairs(d["last"], e["first"], d["last_cell"] & e["first_cell"],
                                             p["link_overlap"])
                ea.append(a_ids + off[b.index])
                eb.append(b_ids + off[nz])
    total = int(counts.sum())
    # component labels come in order of their smallest node: node 0 (no object) is 0, objects 1..N
    comp = union(total + 1, np.concatenate(ea), np.concatenate(eb))
    return offsets, counts, comp


@contextlib.contextmanager
def _cluster(workers, threads, scheduler):
    """A Dask client for the whole step (one cluster start, `mpfpipe.cluster`), or None to run inline
    (workers=0)."""
    from ..cluster import task_runner
    with task_runner(workers, threads, scheduler) as runner:
        yield runner.client


def _run_tasks(client, calls: list, desc: str, progress: bool, result: InstanceResult, account: str) -> int:
    """Run ``calls`` [(fn, args, block index)] inline (no client) or on Dask; failures are collected in
    ``result.errors``, the tasks' CPU seconds added to ``result.cpu_seconds[account]``. Returns the number done."""
    from tqdm.auto import tqdm
    done = 0

    def count(out):
        result.cpu_seconds[account] = result.cpu_seconds.get(account, 0.0) + float((out or {}).get("cpu", 0.0))

    bar = tqdm(total=len(calls), unit="block", disable=not progress or not calls, desc=desc)
    try:
        if client is None:
            for fn, args, index in calls:
                try:
                    count(fn(*args))
                    done += 1
                except MpfError as exc:  # a bug is not caught: it surfaces here, without Dask to report it
                    result.errors.append(f"{desc} block {index}: {exc}")
                bar.update(1)
            return done
        from distributed import as_completed
        futures = {client.submit(fn, *args, retries=1, pure=False): index for fn, args, index in calls}
        for fut in as_completed(futures):
            _stop.check()
            try:
                count(fut.result())
                done += 1
            except Exception as exc:  # noqa: BLE001 - reported, the other blocks go on
                result.errors.append(f"{desc} block {futures[fut]}: {type(exc).__name__}: {exc}")
            bar.update(1)
            fut.release()
        return done
    finally:
        bar.close()


@_lock.locked("output", "segmentation")
def label_instances(output, *, threshold=None, seed_distance=None, merge_threshold=None, min_size=None,
                    agglomeration=None, merge_score=None, merge_quantile=None, smooth=None, merge_classifier=None,
                    link_slices=None, link_overlap=None, margin=None, positive=None, block=None,
                    workers: int | None = None, threads: int | None = None, scheduler: str | None = None,
                    overwrite: bool = False, progress: bool = True) -> InstanceResult:
    """Write ``labels/instances`` into the complete segmentation ``output`` (see the module doc). Parameters
    left None come from the model's ``instances`` metadata, else `DEFAULTS`; ``positive``: the membrane class
    (default: the segmentation's); ``block``: (bz, by, bx) (default: `default_block` of the segmentation's)."""
    from ..options import check
    from .omezarr import output_state
    check("instances", {"workers": workers, "threads": threads})
    t0 = time.perf_counter()
    out = str(Path(output).absolute())
    meta = output_state(output)
    if meta is None or meta.get("foreign"):
        raise DataError(f"{output} is not an mpfpipe segmentation output: run `mpfpipe segment` first")
    if not meta.get("complete"):
        raise DataError(f"{output} is an unfinished segmentation: finish it (rerun `mpfpipe segment`) first")
    pos = _membrane_class(meta, positive)
    p = _params(meta, {"threshold": threshold, "seed_distance": seed_distance, "merge_threshold": merge_threshold,
                       "min_size": min_size, "agglomeration": agglomeration, "merge_score": merge_score,
                       "merge_quantile": merge_quantile, "smooth": smooth, "merge_classifier": merge_classifier,
                       "link_slices": link_slices,
                       "link_overlap": link_overlap, "margin": margin})
    shape = tuple(meta["input"]["shape"])
    try:  # given: "1,1024,1024", "1024x1024" or a sequence, as segment's block
        blk = parse_block(block) if block else default_block(meta["block"])
    except DataError as exc:
        raise DataError(f"instance {exc}") from None
    if len(blk) != 3 or min(blk) < 1:
        raise DataError(f"instance block must be three positive sizes (z, y, x), got {blk!r}")
    chunk = tuple(min(b, n) for b, n in zip(blk, shape))
    settings = {**p, "positive": pos, "block": list(chunk), "segmentation": meta.get("token")}
    done_labels = store.labels_state(out)
    if done_labels is not None and done_labels.get("complete") and done_labels.get("settings") == settings \
            and not overwrite and repair_instances(out):  # damaged blocks: redone below, the rest kept
        done_labels = store.labels_state(out)
    if done_labels is not None and (overwrite or done_labels.get("settings") != settings
                                    or done_labels.get("complete")):
        if not overwrite:
            state = "complete" if done_labels.get("complete") else "unfinished"
            same = "the same" if done_labels.get("settings") == settings else "other"
            raise OutputExistsError(f"{output} has {state} labels/instances made with {same} settings; pass "
                                    "--overwrite to recompute them")
        store.remove(out)
    work = store.work_state(out)
    if work is not None and (work.get("settings") != settings or overwrite):
        store.remove(out)
        work = None
    blocks = block_grid(shape, chunk)
    grid = grid_shape(shape, chunk)
    result = InstanceResult(str(output), blocks=len(blocks))
    # passes 1 and 2 only while a level-0 block is to be (re)labelled: repaired pyramid blocks need neither
    relabel = store.labels_state(out) is None or not store.read_done(out, store.done_name(0)).all()
    if relabel and work is None:
        store.create_work(out, shape, chunk, grid, settings)
    with _cluster(workers, threads, scheduler) as client:
        if relabel:
            calls = _fragment_calls(out, p, pos, blocks, grid, result)
            if calls:  # the kernels compiled once per machine, not by every worker at once
                from ..data.warm import warm_instance_workers
                warm_instance_workers(client)
            result.done = _run_tasks(client, calls, "fragments", progress, result, "fragments")
            _check(result)
            c0 = time.process_time()
            offsets, counts, n_objects = _mapping(out, blocks, grid, p)
            result.cpu_seconds["union"] = time.process_time() - c0
        else:
            n_objects = int(store.labels_state(out)["n_objects"])
        levels = int(meta.get("levels", 1))
        zlevels = tuple(meta.get("z_levels", ()))  # the levels that halve z too (pyramid.z_levels)
        if store.labels_state(out) is None:
            store.create_labels(out, shape=shape, chunk=chunk, levels=levels,
                                dtype=np.load(Path(out) / store.WORK / "mapping.npy", mmap_mode="r").dtype,
                                two_d=_two_d(out), scale=meta["input"]["scale"],
                                units=meta["input"].get("units") or {}, settings=settings, zlevels=zlevels,
                                token=store.work_state(out)["token"], n_objects=n_objects)
        from .pyramid import level_blocks
        for lv in range(levels):
            lblocks = blocks if lv == 0 else level_blocks(shape, chunk, lv, zlevels)
            ldone = store.read_done(out, store.done_name(lv))
            todo = [b for b in lblocks if not ldone[b.index]]
            if lv == 0:
                k = {b.index: i for i, b in enumerate(blocks)}
                calls = [(relabel_task, (out, b, int(offsets[k[b.index]]), int(counts[k[b.index]])), b.index)
                         for b in todo]
            else:
                calls = [(level_task, (out, lv, b, lv in zlevels), b.index) for b in todo]
            _run_tasks(client, calls, f"instances level {lv}", progress, result,
                       "relabel" if lv == 0 else "pyramid")
            _check(result)
    store.set_labels_complete(out)
    import shutil
    shutil.rmtree(Path(out) / store.WORK, ignore_errors=True)
    result.n_objects, result.seconds = n_objects, time.perf_counter() - t0
    return result


def _fragment_calls(out: str, p: dict, pos: int, blocks: list, grid, result: InstanceResult) -> list:
    """Pass 1's tasks of the blocks without a done marker and their file (the others count as skipped), with
    this run's id (their chunk cache's key)."""
    import uuid
    run = uuid.uuid4().hex
    by_index = {b.index: b for b in blocks}
    done = store.read_done(out, f"{store.WORK}/done_fragments")
    calls = []
    for b in blocks:
        if done[b.index] and store.block_file(out, b.index).is_file():
            result.skipped += 1
            continue
        nbs = {}
        for axis in (1, 2):
            for side, step in (("lo", -1), ("hi", 1)):
                i = list(b.index)
                i[axis] += step
                if 0 <= i[axis] < grid[axis]:
                    nbs[(side, axis)] = by_index[tuple(i)]
        calls.append((fragment_task, (out, p, pos, b, nbs, run), b.index))
    return calls


def _mapping(out: str, blocks, grid, p: dict):
    """Pass 2, or its saved result: (offsets, counts, number of objects); the mapping is written once."""
    mapping = Path(out) / store.WORK / "mapping.npy"
    offsets, counts, comp = _union_find(out, blocks, grid, p)
    n_objects = int(comp.max()) if comp.size else 0
    if not mapping.is_file():
        dtype = np.uint32 if n_objects < 2 ** 32 else np.uint64
        store.save_atomic(mapping, lambda f: np.save(f, comp.astype(dtype)))
    return offsets, counts, n_objects


def _two_d(out: str) -> bool:
    import zarr
    return zarr.open_group(out, mode="r")["0"].ndim == 3


def _check(result: InstanceResult) -> None:
    if result.errors:
        raise InstanceError(f"{len(result.errors)} instance block(s) failed (first: {result.errors[0]}); "
                            "labels/instances is incomplete: rerun the same command to finish it")


@_lock.locked("output", "segmentation")  # one writer across both steps
def segment_and_label(model, input, output, *, instance_options: dict, overwrite: bool = False, **segment_kwargs):
    """``segment --instances``: segment (or keep a complete segmentation of the same model and input), then
    `label_instances`. Returns (SegmentResult or None when kept, InstanceResult)."""
    from ..model import read_metadata, same_model
    from .omezarr import output_state
    from .run import segment
    from ..data.volume import open_volume
    from .imagefiles import is_image_folder
    if is_image_folder(input):
        raise DataError(f"{input} is a folder of images: --instances applies to volumes (OME-Zarr outputs) only")
    from ..options import check
    # bad instance options or a model without a membrane class fail now, not after the whole segmentation
    check("instances", {k: v for k, v in instance_options.items() if v is not None}, where="instances: ")
    from_model = read_metadata(model).get("instances") or {}
    require_classifier({**{k: from_model.get(k) for k in ("merge_score", "merge_classifier")},
                        **{k: v for k, v in instance_options.items() if v is not None}})
    _membrane_class({"class_names": read_metadata(model).get("class_names") or [],
                     "settings": {"positive": segment_kwargs.get("positive", 1)}}, instance_options.get("positive"),
                    what=f"model {model}")
    cluster = {k: segment_kwargs.get(k) for k in ("workers", "threads", "scheduler")}
    from ..cluster import shared_runner
    with shared_runner(**cluster):  # both steps on one cluster
        try:
            seg = segment(model, input, output, overwrite=overwrite, **segment_kwargs)
        except OutputExistsError:
            state = output_state(output) or {}
            # the same model: also once `evaluate --tune-instances` wrote its instance parameters into it
            same = (state.get("complete") and same_model(state.get("model") or {}, model)
                    and (state.get("settings") or {}).get("input") == open_volume(input).path)
            if not same:
                raise
            seg = None  # the probabilities are there: only the instance step runs (again only with --overwrite)
        inst = label_instances(output, **instance_options, **cluster, overwrite=overwrite,
                               progress=segment_kwargs.get("progress", True))
    return seg, inst
