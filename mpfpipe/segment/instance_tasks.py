"""What runs on a worker for the instance step (`instances`): one block of each pass, no Dask here."""
from __future__ import annotations

import functools
import itertools
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

from . import instance_store as store
from .blocks import Block
from ..data.flood import raster_ids
from ..data.watershed import SECTION, overlap_pairs, section_instances


def _timed(task):
    """The task's result with its CPU seconds ("cpu": this worker process's, all its threads: Dask runs one task
    per worker process at a time here) for the step's per-pass account."""
    @functools.wraps(task)
    def run(*args):
        c0 = time.process_time()
        out = task(*args)
        return {**out, "cpu": time.process_time() - c0}
    return run


def _strip(before: Block, after: Block, axis: int, margin: int):
    """Global [lo, hi) along ``axis`` (1 = y, 2 = x) of the strip around the face between two neighbours."""
    face = (before.y, before.x)[axis - 1][1]
    w = min(max(1, margin // 2), before.shape[axis], after.shape[axis])
    return face - w, face + w


# class ``pos`` of decoded probability chunks, per worker process, for one instance step: a block with its margin
# spans up to 3 x 3 chunks, each read by up to 9 blocks; decoding each once per worker instead of once per block
# had been a seventh of the block time (ISBI 2048^2 sections, 512^2 blocks, 32-pixel margin)
_CHUNKS: OrderedDict = OrderedDict()
_CHUNK_BYTES = 96 * 2**20  # two 2048^2 float32 sections' worth: the rows before a block stay in


def _read_class(probs, pos: int, region: tuple, run: str) -> np.ndarray:
    """float32 ``probs[pos][region]`` (``region``: slices of the axes after the class axis) assembled from whole
    chunks, through `_CHUNKS`. Keyed by ``run``, one instance step: the segmentation it reads is complete and
    nothing writes it meanwhile, so a cached chunk cannot be stale; another step's chunks are dropped."""
    if _CHUNKS and next(iter(_CHUNKS))[0] != run:  # every key is of one run
        _CHUNKS.clear()
    cs, shape = probs.chunks[1:], probs.shape[1:]
    out = np.empty([r.stop - r.start for r in region], np.float32)
    spans = [range(r.start // c, (r.stop - 1) // c + 1) for r, c in zip(region, cs)]
    for idx in itertools.product(*spans):
        key = (run, pos, idx)
        chunk = _CHUNKS.get(key)
        if chunk is None:
            chunk = np.asarray(probs[(pos, *(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(idx, cs, shape)))],
                               np.float32)
            _CHUNKS[key] = chunk
            while sum(a.nbytes for a in _CHUNKS.values()) > _CHUNK_BYTES and len(_CHUNKS) > 1:
                _CHUNKS.popitem(last=False)
        else:
            _CHUNKS.move_to_end(key)
        lo = [max(r.start, i * c) for r, i, c in zip(region, idx, cs)]
        hi = [min(r.stop, (i + 1) * c) for r, i, c in zip(region, idx, cs)]
        out[tuple(slice(a - r.start, b - r.start) for a, b, r in zip(lo, hi, region))] = \
            chunk[tuple(slice(a - i * c, b - i * c) for a, b, i, c in zip(lo, hi, idx, cs))]
    return out


@_timed
def fragment_task(out: str, p: dict, pos: int, block: Block, neighbours: dict, run: str) -> dict:
    """Pass 1 for one block (see the module doc). ``neighbours``: ("lo" | "hi", axis) -> the neighbour block
    before / after it along y (1) or x (2); ``run``: the step's id (`_read_class`'s cache)."""
    import zarr
    root = zarr.open_group(out, mode="r")
    meta = root.attrs["mpfpipe"]
    probs = root["0"]
    two_d = probs.ndim == 3
    _, Y, X = meta["input"]["shape"]
    m = int(p["margin"])
    y0, y1 = max(0, block.y[0] - m), min(Y, block.y[1] + m)
    x0, x1 = max(0, block.x[0] - m), min(X, block.x[1] + m)
    region = (slice(y0, y1), slice(x0, x1)) if two_d else (slice(*block.z), slice(y0, y1), slice(x0, x1))
    prob = _read_class(probs, pos, region, run) * np.float32(meta.get("probability_scale", 1.0))
    prob = prob[None] if two_d else prob
    outside = np.zeros(prob.shape, bool)
    for k, z in enumerate(range(*block.z)):  # dataset images of different sizes: outside an image, no object
        h, w = (meta["input"].get("sizes") or [[Y, X]] * (z + 1))[z]
        outside[k, max(0, h - y0):, :] = True
        outside[k, :, max(0, w - x0):] = True
    prob[outside] = 1.0
    core = (slice(block.y[0] - y0, block.y[1] - y0), slice(block.x[0] - x0, block.x[1] - x0))
    local = np.zeros(prob.shape, np.uint32)
    n = 0
    for k in range(prob.shape[0]):
        lab = section_instances(prob[k], **{name: p[name] for name in SECTION})
        lab[outside[k]] = 0
        lut, met = raster_ids(lab[core], start=n)  # n + 1.. in raster order of the core
        lut = np.concatenate([lut, np.zeros(max(0, int(lab.max()) + 1 - lut.size), np.int64)])
        local[k] = lut[lab]  # objects of the margin only get 0: not ours
        n += met
    cell = prob < p["threshold"]
    files = {"n": np.array(n)}
    origin = (None, y0, x0)
    for (side, axis), nb in neighbours.items():
        lo, hi = _strip(block, nb, axis, m) if side == "hi" else _strip(nb, block, axis, m)
        s = [slice(None), *core]
        s[axis] = slice(lo - origin[axis], hi - origin[axis])
        files[f"{side}{axis}"], files[f"{side}{axis}_cell"] = local[tuple(s)], cell[tuple(s)]
    c, cc = local[(slice(None), *core)], cell[(slice(None), *core)]
    files.update(first=c[0], first_cell=cc[0], last=c[-1], last_cell=cc[-1])
    if p["link_slices"] and c.shape[0] > 1:
        links = [np.stack(overlap_pairs(c[k], c[k + 1], cc[k] & cc[k + 1], p["link_overlap"]), 1)
                 for k in range(len(c) - 1)]
        files["links"] = np.concatenate(links).astype(np.int64)
    frag = zarr.open_array(out, path=f"{store.WORK}/fragments", mode="r+")
    frag[slice(*block.z), slice(*block.y), slice(*block.x)] = c
    # small strips: not worth compressing
    store.save_atomic(store.block_file(out, block.index), lambda f: np.savez(f, **files))
    zarr.open_array(out, path=f"{store.WORK}/done_fragments", mode="r+")[block.index] = 1
    return {"index": block.index, "n": n}


@_timed
def relabel_task(out: str, block: Block, offset: int, n: int) -> dict:
    """Pass 3 for one block: final ids from the mapping, written with their checksum, then the done marker."""
    import zarr

    from .._integrity import crc
    frag = np.asarray(zarr.open_array(out, path=f"{store.WORK}/fragments", mode="r")[
        slice(*block.z), slice(*block.y), slice(*block.x)])
    mapping = np.load(Path(out) / store.WORK / "mapping.npy", mmap_mode="r")
    lut = np.zeros(n + 1, mapping.dtype)
    lut[1:] = mapping[offset + 1: offset + n + 1]
    return _write_level(out, 0, block, lut[frag], crc)


def _write_level(out: str, level: int, block: Block, ids: np.ndarray, crc) -> dict:
    import zarr
    arr = zarr.open_array(out, path=f"labels/{store.NAME}/{level}", mode="r+")
    ids = ids.astype(arr.dtype)
    if arr.ndim == 2:
        ids = ids[0]
        arr[slice(*block.y), slice(*block.x)] = ids
    else:
        arr[slice(*block.z), slice(*block.y), slice(*block.x)] = ids
    zarr.open_array(out, path=store.checksums_name(level), mode="r+")[block.index] = crc(ids)
    zarr.open_array(out, path=store.done_name(level), mode="r+")[block.index] = 1
    return {"index": block.index}


@_timed
def level_task(out: str, level: int, block: Block, halve_z: bool = False) -> dict:
    """One pyramid block of labels/instances: the mode of 2 x 2 (x 2 with ``halve_z``) windows of the level
    below."""
    import zarr

    from .._integrity import crc
    from .pyramid import halve_mode, source_region
    prev = zarr.open_array(out, path=f"labels/{store.NAME}/{level - 1}", mode="r")
    zs, ys, xs = source_region((1, *prev.shape) if prev.ndim == 2 else prev.shape, block, halve_z)
    ids = np.asarray(prev[ys, xs])[None] if prev.ndim == 2 else np.asarray(prev[zs, ys, xs])
    return _write_level(out, level, block, halve_mode(ids, halve_z), crc)
