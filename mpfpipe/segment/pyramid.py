"""Multiscale levels of a segmentation: level l halves y and x of level l - 1 and keeps z (EM is anisotropic).

Level l + 1 is computed from level l only, pixel by pixel over 2 x 2 windows: probabilities are averaged, labels
take the window's mode (ties: the value met first in the order top-left, top-right, bottom-left, bottom-right, so
a window of four different labels keeps its top-left value, i.e. nearest-neighbour). An odd row or column at the
end gets a window of its 1 or 2 pixels (edge replication, which changes neither the mean nor the mode). The value
of every level therefore depends only on level 0, never on the block size.

Every level uses the chunk shape of level 0 (capped by its shape) and the same z blocks. A level-l block covers
the 2 x 2 blocks (iz, 2 iy + {0, 1}, 2 ix + {0, 1}) of level l - 1, its *sources*: it is computed once they are
done, writes only its own chunks, then its done marker (``done_<l>``), like the level-0 blocks.
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


def level_shape(shape, level: int) -> tuple:
    """(Z, Y, X) of a level: y and x halved ``level`` times (rounding up), z kept."""
    Z, Y, X = (int(n) for n in shape)
    for _ in range(level):
        Y, X = -(-Y // 2), -(-X // 2)
    return (Z, Y, X)


def level_chunk(shape, chunk, level: int) -> tuple:
    return tuple(min(int(c), n) for c, n in zip(chunk, level_shape(shape, level)))


def level_blocks(shape, chunk, level: int) -> list[Block]:
    return block_grid(level_shape(shape, level), level_chunk(shape, chunk, level))


def source_indices(shape, chunk, level: int, block: Block) -> list[tuple]:
    """Grid indices of the level ``level - 1`` blocks that hold the pixels a level-``level`` block is made of."""
    prev = level_shape(shape, level - 1)
    pchunk = level_chunk(shape, chunk, level - 1)
    pgrid = grid_shape(prev, pchunk)
    y0, y1 = 2 * block.y[0], min(2 * block.y[1], prev[1])
    x0, x1 = 2 * block.x[0], min(2 * block.x[1], prev[2])
    iz = block.index[0]
    return [(iz, iy, ix) for iy in range(y0 // pchunk[1], min(-(-y1 // pchunk[1]), pgrid[1]))
            for ix in range(x0 // pchunk[2], min(-(-x1 // pchunk[2]), pgrid[2]))]


def _pad_even(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[-2:]
    if h % 2 or w % 2:
        pad = [(0, 0)] * (a.ndim - 2) + [(0, h % 2), (0, w % 2)]
        a = np.pad(a, pad, mode="edge")
    return a


def _windows(a: np.ndarray) -> list[np.ndarray]:
    a = _pad_even(a)
    return [a[..., 0::2, 0::2], a[..., 0::2, 1::2], a[..., 1::2, 0::2], a[..., 1::2, 1::2]]


def halve_mean(a: np.ndarray) -> np.ndarray:
    """Mean over 2 x 2 windows of the last two axes, in the input dtype (uint8: rounded half to even)."""
    v = _windows(a)
    s = (v[0].astype(np.float64) + v[1]) + (v[2].astype(np.float64) + v[3])
    s *= 0.25
    if np.dtype(a.dtype).kind in "ui":
        s = np.rint(s)
    return s.astype(a.dtype)


def halve_mode(a: np.ndarray) -> np.ndarray:
    """Most frequent value over 2 x 2 windows of the last two axes (ties: the first in window order)."""
    v = _windows(a)
    counts = [sum((vi == vj).astype(np.uint8) for vj in v) for vi in v]
    best, best_count = v[0].copy(), counts[0]
    for vi, ci in zip(v[1:], counts[1:]):
        take = ci > best_count
        best = np.where(take, vi, best)
        best_count = np.maximum(best_count, ci)
    return best


def compute_level_block(writer, level: int, block: Block) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (K, nz, h, w) and labels (nz, h, w) of one level-``level`` block, from level ``level - 1``."""
    probs_prev, labels_prev = writer.level_arrays(level - 1)
    zs = slice(*block.z)
    ys = slice(2 * block.y[0], min(2 * block.y[1], labels_prev.shape[-2]))
    xs = slice(2 * block.x[0], min(2 * block.x[1], labels_prev.shape[-1]))
    if writer.two_d:
        p = np.asarray(probs_prev[:, ys, xs])[:, None]
        lab = np.asarray(labels_prev[ys, xs])[None]
    else:
        p = np.asarray(probs_prev[:, zs, ys, xs])
        lab = np.asarray(labels_prev[zs, ys, xs])
    return halve_mean(p), halve_mode(lab)


def stored(writer, probs: np.ndarray) -> np.ndarray:
    """Level-0 probabilities as the output stores them (quantised, or in its dtype): what level 1 is made from."""
    from .blocks import quantise
    if writer.quantized and probs.dtype != np.uint8:
        return quantise(probs)
    return np.asarray(probs, dtype=writer.probs.dtype)


def level1_units(shape, chunk, todo0: list[Block], todo1: list[Block]) -> tuple[list[list[Block]], dict]:
    """Level-0 blocks to do, as units of a task: the whole source set of each level-1 block whose sources are all
    to do (that block is then made in the same task, from the sources in memory: `LevelOne`), the others alone.
    Returns (units, {level-1 index: (level-1 block, source indices)}). Halving block by block equals halving the
    level only when blocks start on even pixels, so an odd chunk makes no units of several blocks."""
    if chunk[1] % 2 or chunk[2] % 2:
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
