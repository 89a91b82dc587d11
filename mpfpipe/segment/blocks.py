"""Block grid, halo reads with mirroring at the volume edge, and the per-block computation (no Dask here).

A volume (Z, Y, X) is cut into blocks of (bz, by, bx) voxels (slices x tiles; the last block along an axis may be
smaller). The net is 2D, so a block needs context only in y and x: ``net.halo`` = (before, after) pixels around it.
Where that context lies inside the slice it is read from the volume; where it crosses the slice's edge it is
mirrored exactly as ``numpy.pad(mode="symmetric")`` mirrors the whole slice in `mpfpipe.fragment.dense_forward`
(edge pixel repeated, reflecting again if the halo is larger than the slice). So every block's output equals the
whole-slice dense forward pass on its pixels, whatever the block size.
"""
from __future__ import annotations

import itertools
import resource
from dataclasses import dataclass

import numpy as np

from ..fragment import dense_logits_padded
from ..loss import softmax

LABEL_FILL = 255  # label value of voxels outside an image's valid region (datasets of different image sizes)


@dataclass(frozen=True)
class Block:
    index: tuple  # (iz, iy, ix) position in the block grid
    z: tuple      # [z0, z1)
    y: tuple      # [y0, y1)
    x: tuple      # [x0, x1)

    @property
    def shape(self) -> tuple:
        return (self.z[1] - self.z[0], self.y[1] - self.y[0], self.x[1] - self.x[0])

    @property
    def voxels(self) -> int:
        return int(np.prod(self.shape))


def grid_shape(shape, block) -> tuple:
    return tuple(-(-int(n) // int(b)) for n, b in zip(shape, block))


def block_grid(shape, block) -> list[Block]:
    """All blocks of a (Z, Y, X) volume in C order of their grid index."""
    shape, block = tuple(int(n) for n in shape), tuple(int(b) for b in block)
    out = []
    for idx in itertools.product(*(range(n) for n in grid_shape(shape, block))):
        lo = [i * b for i, b in zip(idx, block)]
        hi = [min(lo_ + b, n) for lo_, b, n in zip(lo, block, shape)]
        out.append(Block(tuple(idx), (lo[0], hi[0]), (lo[1], hi[1]), (lo[2], hi[2])))
    return out


def reflect(idx: np.ndarray, n: int) -> np.ndarray:
    """Map indices (any integers) into [0, n) the way ``numpy.pad(mode="symmetric")`` extends an axis of length n:
    ... 1 0 | 0 1 ... n-1 | n-1 n-2 ... (period 2n)."""
    idx = np.mod(np.asarray(idx, dtype=np.int64), 2 * n)
    return np.where(idx >= n, 2 * n - 1 - idx, idx)


def halo_indices(lo: int, hi: int, n: int, before: int, after: int) -> np.ndarray:
    """Source indices (into an axis of length n) of the region [lo - before, hi + after), mirrored at 0 and n."""
    return reflect(np.arange(lo - before, hi + after), n)


def read_with_halo(read, zr: tuple, yr: tuple, xr: tuple, size: tuple, halo: tuple) -> np.ndarray:
    """Read block rows ``yr`` x columns ``xr`` of slices ``zr`` plus ``halo`` = (before, after) around it.

    ``read(z0, z1, (y0, y1), (x0, x1))`` returns raw voxels (z1 - z0, C, y1 - y0, x1 - x0); ``size`` = (h, w) of
    the slice(s) the block lies in (mirroring happens at their edge). One rectangular read covers every source
    pixel needed; the mirrored layout is then gathered from it. Returns (nz, C, h + before + after, ...)."""
    before, after = halo
    H, W = size
    iy = halo_indices(yr[0], yr[1], H, before, after)
    ix = halo_indices(xr[0], xr[1], W, before, after)
    y0, y1 = int(iy.min()), int(iy.max()) + 1
    x0, x1 = int(ix.min()), int(ix.max()) + 1
    region = np.asarray(read(zr[0], zr[1], (y0, y1), (x0, x1)))
    return region[:, :, (iy - y0)[:, None], (ix - x0)[None, :]]


@dataclass
class Engine:
    """What a worker needs to segment: the net, its parameters, the input normalisation and output options."""
    net: object
    params: dict
    normalisation: dict
    dtype: str = "float32"
    threshold: float | None = None  # None: arg-max; else label = p[positive] > threshold (2-class nets)
    positive: int = 1


def normalise(raw: np.ndarray, normalisation: dict) -> np.ndarray:
    """(raw - mean[c]) / std[c] over axis 0, as float32 (the training data layer's formula)."""
    try:
        from ..data import normalise as _normalise
    except ImportError:  # pragma: no cover - the data layer is part of the package; fallback for partial installs
        _normalise = None
    if _normalise is not None:
        return _normalise(raw, normalisation)
    mean = np.asarray(normalisation["mean"], dtype=np.float64)
    std = np.asarray(normalisation["std"], dtype=np.float64)
    std = np.where(std > 1e-12, std, 1.0)
    extra = (1,) * (raw.ndim - 1)
    out = raw.astype(np.float32) - mean.astype(np.float32).reshape(-1, *extra)
    out *= (1.0 / std).astype(np.float32).reshape(-1, *extra)
    return out


def labels_from_probs(probs: np.ndarray, engine: Engine) -> np.ndarray:
    """Segmentation (..., ) uint8 from probabilities (K, ...): arg-max, or p[positive] > threshold."""
    if engine.threshold is None:
        return np.argmax(probs, axis=0).astype(np.uint8)
    return (probs[engine.positive] > engine.threshold).astype(np.uint8)


def quantise(probs: np.ndarray) -> np.ndarray:
    """float probabilities in [0, 1] -> uint8 round(p * 255)."""
    return np.clip(np.rint(probs * 255.0), 0, 255).astype(np.uint8)


def read_block(read, block: Block, sizes, halo) -> list:
    """The raw input of one block: per slice z, ``(k, z, raw (C, h + halo, w + halo))``, or None for a slice whose
    valid region misses the block. ``sizes(z)`` gives the valid (h, w) of slice z."""
    out = []
    for k, z in enumerate(range(*block.z)):
        H, W = sizes(z)
        y1, x1 = min(block.y[1], H), min(block.x[1], W)
        if y1 <= block.y[0] or x1 <= block.x[0]:
            continue
        out.append((k, z, read_with_halo(read, (z, z + 1), (block.y[0], y1), (block.x[0], x1), (H, W), halo)[0]))
    return out


def forward_block(engine: Engine, block: Block, inputs: list) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (K, nz, h, w) float32 and labels (nz, h, w) uint8 of one block from its `read_block` input.

    Voxels outside a slice's valid region (padding of datasets whose images differ in size) get probability 0 and
    label LABEL_FILL."""
    net = engine.net
    nz, bh, bw = block.shape
    probs = np.zeros((net.n_classes, nz, bh, bw), dtype=np.float32)
    labels = np.full((nz, bh, bw), LABEL_FILL, dtype=np.uint8)
    ctx = net.window - 1
    for k, _z, raw in inputs:
        x = normalise(raw, engine.normalisation)
        p = softmax(dense_logits_padded(net, engine.params, x, dtype=np.dtype(engine.dtype)))
        h, w = raw.shape[1] - ctx, raw.shape[2] - ctx
        probs[:, k, :h, :w] = p  # float32 here, whatever dtype the engine ran in
        labels[k, :h, :w] = labels_from_probs(probs[:, k, :h, :w], engine)
    return probs, labels


def compute_block(engine: Engine, read, block: Block, sizes) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (K, nz, h, w) float32 and labels (nz, h, w) uint8 of one block (`read_block` then
    `forward_block`)."""
    return forward_block(engine, block, read_block(read, block, sizes, engine.net.halo))


def peak_rss_bytes() -> int:
    """Peak resident memory of this process (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
