"""Multiscale levels of a segmentation: level l halves y and x of level l - 1 and keeps z (EM is anisotropic),
unless the volume's voxels call for halving z too (`z_levels`: only for a 3D model and a volume whose voxel size
is known; a 2D model's output is a stack of independent sections and always keeps z).

Level l + 1 is computed from level l only, pixel by pixel over 2 x 2 windows: probabilities are averaged, labels
take the window's mode (ties: the value met first in the order top-left, top-right, bottom-left, bottom-right, so
a window of four different labels keeps its top-left value, i.e. nearest-neighbour). An odd row or column at the
end gets a window of its 1 or 2 pixels (edge replication, which changes neither the mean nor the mode). The value
of every level therefore depends only on level 0, never on the block size.

Every level uses the chunk shape of level 0 (capped by its shape) and the same z blocks. A level-l block covers
the 2 x 2 blocks (iz, 2 iy + {0, 1}, 2 ix + {0, 1}) of level l - 1, its *sources*: it is computed once they are
done, writes only its own chunks, then its done marker (``done_<l>``), like the level-0 blocks. A level that
halves z too (``zlevels``) works on 2 x 2 x 2 windows the same way (window order z-major: the section below first)
and its blocks' sources span two z blocks where the chunk allows.
"""
from __future__ import annotations

import numpy as np

from .blocks import Block, block_grid, grid_shape

MIN_SIDE = 256  # the coarsest level has a smaller side <= this (napari and neuroglancer browse such levels fast)


def auto_levels(shape, min_side: int = MIN_SIDE) -> int:
    """Number of levels (level 0 included) for a (Z, Y, X) volume: halve y, x until the smaller side <= min_side."""
    y, x = int(shape[1]), int(shape[2])
    n = 1
    while min(y, x) > min_side:
        y, x = -(-y // 2), -(-x // 2)
        n += 1
    return n


def z_levels(levels: int, scale, *, volume_net: bool, known: bool) -> tuple:
    """The pyramid levels (1 .. levels - 1) that halve z as well as y and x: none unless the model is 3D and the
    voxel size is known. Then, at each level, z halves when that brings its voxel size closer to the new y size
    than keeping it would: |z - t| > |2 z - t| with t = 2 y (the rule of neuroglancer's
    ``compute_near_isotropic_downsampling_scales``, python/neuroglancer/downsample_scales.py, for the axes other
    than the finest; here y and x always halve). ISBI 2012 (50, 4, 4 nm): z is kept until y reaches 64 nm;
    isotropic voxels halve z at every level."""
    if not (volume_net and known):
        return ()
    z, y = float(scale[0]), float(scale[1])
    out = []
    for lv in range(1, levels):
        t = 2.0 * y
        if abs(z - t) > abs(2.0 * z - t):
            z *= 2.0
            out.append(lv)
        y = t
    return tuple(out)


def level_shape(shape, level: int, zlevels=()) -> tuple:
    """(Z, Y, X) of a level: y and x halved ``level`` times (rounding up), z halved at the ``zlevels``."""
    Z, Y, X = (int(n) for n in shape)
    for lv in range(1, level + 1):
        Y, X = -(-Y // 2), -(-X // 2)
        if lv in zlevels:
            Z = -(-Z // 2)
    return (Z, Y, X)


def level_chunk(shape, chunk, level: int, zlevels=()) -> tuple:
    return tuple(min(int(c), n) for c, n in zip(chunk, level_shape(shape, level, zlevels)))


def level_blocks(shape, chunk, level: int, zlevels=()) -> list[Block]:
    return block_grid(level_shape(shape, level, zlevels), level_chunk(shape, chunk, level, zlevels))


def source_region(prev_shape, block: Block, halve_z: bool) -> tuple:
    """(z, y, x) slices of the level below that a block of the next level is made of."""
    zs = slice(2 * block.z[0], min(2 * block.z[1], prev_shape[0])) if halve_z else slice(*block.z)
    return (zs, slice(2 * block.y[0], min(2 * block.y[1], prev_shape[1])),
            slice(2 * block.x[0], min(2 * block.x[1], prev_shape[2])))


def source_indices(shape, chunk, level: int, block: Block, zlevels=()) -> list[tuple]:
    """Grid indices of the level ``level - 1`` blocks that hold the pixels a level-``level`` block is made of."""
    prev = level_shape(shape, level - 1, zlevels)
    pchunk = level_chunk(shape, chunk, level - 1, zlevels)
    pgrid = grid_shape(prev, pchunk)
    ranges = [range(s.start // c, min(-(-s.stop // c), g))
              for s, c, g in zip(source_region(prev, block, level in zlevels), pchunk, pgrid)]
    return [(iz, iy, ix) for iz in ranges[0] for iy in ranges[1] for ix in ranges[2]]


def _windows(a: np.ndarray, z: bool = False) -> list[np.ndarray]:
    """The 4 (or with ``z`` 8: the last three axes) interleaved sub-grids of the 2 x 2 (x 2) windows, in window
    order; an odd size at the end is padded by repeating its edge."""
    n = 3 if z else 2
    odd = [s % 2 for s in a.shape[-n:]]
    if any(odd):
        a = np.pad(a, [(0, 0)] * (a.ndim - n) + [(0, o) for o in odd], mode="edge")
    offsets = [(dz, dy, dx) for dz in ((0, 1) if z else (None,)) for dy in (0, 1) for dx in (0, 1)]
    return [a[(Ellipsis,) + ((slice(dz, None, 2),) if z else ()) + (slice(dy, None, 2), slice(dx, None, 2))]
            for dz, dy, dx in offsets]


def halve_mean(a: np.ndarray, z: bool = False) -> np.ndarray:
    """Mean over 2 x 2 windows of the last two axes (2 x 2 x 2 of the last three with ``z``), in the input dtype
    (uint8: rounded half to even)."""
    v = _windows(a, z)
    s = (v[0].astype(np.float64) + v[1]) + (v[2].astype(np.float64) + v[3])
    if z:
        s += (v[4].astype(np.float64) + v[5]) + (v[6].astype(np.float64) + v[7])
    s *= 1.0 / len(v)
    if np.dtype(a.dtype).kind in "ui":
        s = np.rint(s)
    return s.astype(a.dtype)


def halve_mode(a: np.ndarray, z: bool = False) -> np.ndarray:
    """Most frequent value over 2 x 2 windows of the last two axes (2 x 2 x 2 of the last three with ``z``; ties:
    the first in window order)."""
    v = _windows(a, z)
    counts = [sum((vi == vj).astype(np.uint8) for vj in v) for vi in v]
    best, best_count = v[0].copy(), counts[0]
    for vi, ci in zip(v[1:], counts[1:]):
        take = ci > best_count
        best = np.where(take, vi, best)
        best_count = np.maximum(best_count, ci)
    return best


def compute_level_block(writer, level: int, block: Block, halve_z: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (K, nz, h, w) and labels (nz, h, w) of one level-``level`` block, from level ``level - 1``
    (``halve_z``: this level halves z too)."""
    probs_prev, labels_prev = writer.level_arrays(level - 1)
    prev = (1, *labels_prev.shape) if writer.two_d else labels_prev.shape
    zs, ys, xs = source_region(prev, block, halve_z)
    if writer.two_d:
        p = np.asarray(probs_prev[:, ys, xs])[:, None]
        lab = np.asarray(labels_prev[ys, xs])[None]
    else:
        p = np.asarray(probs_prev[:, zs, ys, xs])
        lab = np.asarray(labels_prev[zs, ys, xs])
    return halve_mean(p, halve_z), halve_mode(lab, halve_z)


def stored(writer, probs: np.ndarray) -> np.ndarray:
    """Level-0 probabilities as the output stores them (quantised, or in its dtype): what level 1 is made from."""
    from .blocks import quantise
    if writer.quantized and probs.dtype != np.uint8:
        return quantise(probs)
    return np.asarray(probs, dtype=writer.probs.dtype)


def level1_units(shape, chunk, todo0: list[Block], todo1: list[Block], zlevels=()) -> tuple[list[list[Block]], dict]:
    """Level-0 blocks to do, as units of a task: the whole source set of each level-1 block whose sources are all
    to do (that block is then made in the same task, from the sources in memory: `LevelOne`), the others alone.
    Returns (units, {level-1 index: (level-1 block, source indices)}). Halving block by block equals halving the
    level only when blocks start on even pixels, so an odd chunk makes no units of several blocks; nor does a
    level 1 that halves z (its sources span z blocks)."""
    if chunk[1] % 2 or chunk[2] % 2 or 1 in zlevels:
        return [[b] for b in todo0], {}
    by_index = {b.index: b for b in todo0}
    units, inline, taken = [], {}, set()
    for b1 in todo1:
        needed = source_indices(shape, chunk, 1, b1)
        if all(i in by_index for i in needed):
            units.append([by_index[i] for i in needed])
            inline[b1.index] = (b1, needed)
            taken.update(needed)
    units += [[b] for b in todo0 if b.index not in taken]
    units.sort(key=lambda u: u[0].index)
    return units, inline


class LevelOne:
    """A level-1 block made in the task of its level-0 sources: each source's halves go in as it is computed."""

    def __init__(self, block: Block, needed: list, n_classes: int, probs_dtype):
        nz, h, w = block.shape
        self.block, self.missing = block, set(map(tuple, needed))
        self.probs = np.zeros((n_classes, nz, h, w), dtype=probs_dtype)
        self.labels = np.zeros((nz, h, w), dtype=np.uint8)

    def add(self, block: Block, probs: np.ndarray, labels: np.ndarray) -> bool:
        """Put a source's halves (of its stored probabilities and its labels) in place; True once all are in."""
        y0, x0 = block.y[0] // 2 - self.block.y[0], block.x[0] // 2 - self.block.x[0]
        p, lab = halve_mean(probs), halve_mode(labels)
        self.probs[:, :, y0:y0 + p.shape[2], x0:x0 + p.shape[3]] = p
        self.labels[:, y0:y0 + lab.shape[1], x0:x0 + lab.shape[2]] = lab
        self.missing.discard(tuple(block.index))
        return not self.missing
