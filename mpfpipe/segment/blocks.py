"""Block grid, halo reads with mirroring at the volume edge, and the per-block computation (no Dask here).

A volume (Z, Y, X) is cut into blocks of (bz, by, bx) voxels (slices x tiles; the last block along an axis may be
smaller). The net is 2D, so a block needs context only in y and x: ``net.halo`` = (before, after) pixels around it.
Where that context lies inside the slice it is read from the volume; where it crosses the slice's edge it is
mirrored exactly as ``numpy.pad(mode="symmetric")`` mirrors the whole slice in `mpfpipe.fragment.dense_forward`
(edge pixel repeated, reflecting again if the halo is larger than the slice). So every block's output equals the
whole-slice dense forward pass on its pixels, whatever the block size.

Test-time augmentation (``Engine.tta``) averages the class probabilities over the 8 flips and 90-degree turns T of
the dihedral group D4: p = mean_T T^-1(softmax(net(T(x)))). The MPF output is exact per pixel, so T^-1(net(T(x)))
at a pixel is the patch network on the transformed window around it; for an even window the halo is uneven
(before != after) and a flip swaps it, so a TTA block reads a symmetric halo of max(before, after) and crops each
transformed copy to the halo the net needs. Mirroring at the slice edge commutes with the flips, so a TTA block
equals the whole-slice TTA result on its pixels, whatever the block size, as without TTA.

A 3D net (``net.ndim == 3``, issue 26) needs context in z too: ``net.halo3`` = (before, after) per axis (z, y, x).
Its block is read once with that halo in all three axes, mirrored at the volume's edges in z as in y and x (the
same ``symmetric`` rule, so the whole-volume dense pass padded the same way gives the same voxels), and runs as
one dense forward pass over (C, nz + halo, h + halo, w + halo). TTA turns and flips y and x only (the 8 elements
of D4 act on the last two axes; z is never flipped, since the net's z context need not be symmetric).
"""
from __future__ import annotations

import itertools
import resource
from dataclasses import dataclass

import numpy as np

from ..fragment import dense_logits_padded
from ..loss import softmax

LABEL_FILL = 255  # label value of voxels outside an image's valid region (datasets of different image sizes)
# The default blocks (segment's --block when none is given). A block computes the net's halo too, so the larger the
# block the less is computed twice: n3 on 20 x 2048 x 2048 noise ran at 0.97 of the engine's 512 x 512 throughput
# in 1024 x 1024 blocks, at 0.88-0.92 in 512 x 512 ones, for ~1 GB per worker. A 3D net's block also reads its
# z halo, which grows with y x x: it keeps 512 x 512.
DEFAULT_BLOCK = (1, 1024, 1024)
DEFAULT_BLOCK_3D = (1, 512, 512)


def default_block(ndim: int) -> tuple[int, int, int]:
    """The block of a ``ndim``-D net when none is given."""
    return DEFAULT_BLOCK_3D if ndim == 3 else DEFAULT_BLOCK


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
    (yb, ya), (xb, xa) = halo if isinstance(halo[0], tuple) else (halo, halo)  # y and x may differ (3D TTA)
    H, W = size
    iy = halo_indices(yr[0], yr[1], H, yb, ya)
    ix = halo_indices(xr[0], xr[1], W, xb, xa)
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
    tta: bool = False  # average the probabilities over the 8 transforms of D4 (flips, 90-degree turns)

    @property
    def halo(self) -> tuple:
        """Context read around a block: the net's (before, after), symmetric max(before, after) with TTA; for a
        3D net the ((before, after) in z, in y, in x) of `halo3`, y and x symmetric with TTA."""
        if self.net.ndim == 3:
            hz, hy, hx = self.net.halo3
            return (hz, *(((max(h),) * 2 if self.tta else h) for h in (hy, hx)))
        before, after = self.net.halo
        return (max(before, after),) * 2 if self.tta else (before, after)


# The dihedral group D4 as (transpose, flip rows, flip columns), applied in that order; identity first.
D4 = tuple((tr, fy, fx) for tr in (False, True) for fy in (False, True) for fx in (False, True))


def d4(a: np.ndarray, t: tuple) -> np.ndarray:
    """T(a) on the last two axes of ``a``."""
    tr, fy, fx = t
    if tr:
        a = np.swapaxes(a, -1, -2)
    if fy:
        a = a[..., ::-1, :]
    if fx:
        a = a[..., ::-1]
    return a


def d4_inverse(a: np.ndarray, t: tuple) -> np.ndarray:
    """T^-1(a): the flips undone, then the transpose."""
    tr, fy, fx = t
    if fx:
        a = a[..., ::-1]
    if fy:
        a = a[..., ::-1, :]
    if tr:
        a = np.swapaxes(a, -1, -2)
    return a


def region_probs(engine: "Engine", x: np.ndarray) -> np.ndarray:
    """Probabilities (K, [nz,] h, w) float32 of a normalised region ``x`` (C, [nz + z halo,] h + 2 halo...) read
    with ``engine.halo`` around it: the dense forward pass, or with ``engine.tta`` the mean over D4 (in y and x)
    of T^-1(softmax(net(T(x))))."""
    net, dt = engine.net, np.dtype(engine.dtype)
    if not engine.tta:
        return softmax(dense_logits_padded(net, engine.params, x, dtype=dt)).astype(np.float32)
    before, after = net.halo3[1]
    m = engine.halo[-1][0] if net.ndim == 3 else engine.halo[0]
    acc = None
    for t in D4:
        xt = d4(x, t)
        h, w = xt.shape[-2] - 2 * m, xt.shape[-1] - 2 * m
        xt = np.ascontiguousarray(xt[..., m - before:m + h + after, m - before:m + w + after])
        p = d4_inverse(softmax(dense_logits_padded(net, engine.params, xt, dtype=dt)), t).astype(np.float64)
        acc = p if acc is None else acc + p
    return (acc / len(D4)).astype(np.float32)


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


def read_with_halo3(read, block: Block, shape: tuple, halo3: tuple) -> np.ndarray:
    """A 3D net's input of ``block``: (C, nz + z halo, h + y halo, w + x halo) raw voxels of a (Z, Y, X) volume,
    mirrored at its edges in every axis (``numpy.pad(mode="symmetric")`` of the whole volume, cropped), read as
    one rectangular region."""
    (zb, za), (yb, ya), (xb, xa) = halo3
    iz = halo_indices(block.z[0], block.z[1], shape[0], zb, za)
    z0, z1 = int(iz.min()), int(iz.max()) + 1
    rows = read_with_halo(read, (z0, z1), block.y, block.x, shape[1:], ((yb, ya), (xb, xa)))
    return np.ascontiguousarray(np.moveaxis(rows[iz - z0], 1, 0))


def read_block(read, block: Block, sizes, halo, shape=None) -> list:
    """The raw input of one block: per slice z, ``(k, z, raw (C, h + halo, w + halo))``, or None for a slice whose
    valid region misses the block. ``sizes(z)`` gives the valid (h, w) of slice z. With a 3D net's ``halo``
    (three pairs) and the volume's (Z, Y, X) ``shape``: one item ``(0, z0, raw (C, nz + halo, ...))``."""
    if len(halo) == 3:
        return [(0, block.z[0], read_with_halo3(read, block, shape, halo))]
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
    if net.ndim == 3:  # one pass over the whole block (all sections are the volume's full size)
        (_, _, raw), = inputs
        probs = region_probs(engine, normalise(raw, engine.normalisation))
        return probs, labels_from_probs(probs, engine)
    probs = np.zeros((net.n_classes, nz, bh, bw), dtype=np.float32)
    labels = np.full((nz, bh, bw), LABEL_FILL, dtype=np.uint8)
    ctx = sum(engine.halo)  # read with engine.halo (symmetric with TTA)
    for k, _z, raw in inputs:
        p = region_probs(engine, normalise(raw, engine.normalisation))  # float32 whatever dtype the engine ran in
        h, w = raw.shape[1] - ctx, raw.shape[2] - ctx
        probs[:, k, :h, :w] = p
        labels[k, :h, :w] = labels_from_probs(p, engine)
    return probs, labels


def compute_block(engine: Engine, read, block: Block, sizes, shape=None) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (K, nz, h, w) float32 and labels (nz, h, w) uint8 of one block (`read_block` then
    `forward_block`); ``shape``: the volume's (Z, Y, X), needed by a 3D net."""
    return forward_block(engine, block, read_block(read, block, sizes, engine.halo, shape))


def peak_rss_bytes() -> int:
    """Peak resident memory of this process (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
