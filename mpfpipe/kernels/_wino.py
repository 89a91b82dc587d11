"""Winograd's minimal filtering F(2, k) along the fragments' rows, for the inference convolutions of many-map
layers (`applies`): the fused conv + pool and the fused output pair of a prediction (`network.forward` with
``winograd``; `fragment.dense_forward` asks for it, training never does).

Why. The register tiles run at 94-95 % of the FMA peak, and the layers at ~88 %: what is left cannot make the
engine clearly faster than onnxruntime, which is near the peak too. Fewer multiplies can. Two outputs of a row
need k + 1 products instead of 2k: 5/8 of the multiplies for k = 4, 6/10 for k = 5, 4/6 for k = 3.

How. With alpha = k + 1 evaluation points (0, 1, -1, 1/2, -2, ... and infinity; Toom-Cook), a row's outputs
y[2t + j] = sum_i g[i] x[2t + j + i] (j < 2) are A^T [(G g) * (B^T d_t)] with d_t = x[2t : 2t + alpha]:
- the input transform V_a[c, r, t] = sum_i B^T[a, i] x[c, r, 2t + i] makes alpha planes of half-width rows;
- each plane is a (k x 1) convolution with the transformed kernel U_a[o, c, ky] = sum_kx G[a, kx] W[o, c, ky, kx],
  on the same register tiles as the direct convolution (`_block._conv_block` with kw = 1), with no dropped columns;
- the output transform y[o, r, 2t + j] = sum_a A^T[j, a] M_a[o, r, t].
The matrices: A^T = H^T and B^T = C^T, where C inverts the alpha x alpha evaluation matrix and H, G are the
evaluation matrices of 2-term and k-term polynomials (the transposed Toom-Cook convolution is a correlation).
Lavin & Gray, "Fast algorithms for convolutional neural networks" (CVPR 2016), section 4, build F(m, r) the same way.

Exactness. float32 errors against float64 stay at the direct convolution's level for F(2, k) (n3's layers: 9e-6
against 7.5e-6 at scale 5.6; F(2, 3): 3e-6 against 6e-6), while F(3, 4) and F(4, 4) double them, so only F(2, k)
is built. Every multiply-add is `llvm.fma` on the fixed 64-byte vectors, so the bits do not depend on the thread
count, the blocking or the instruction set (`_wtrans`). They are not the direct convolution's bits: a prediction
differs from the training forward pass by rounding (n3: up to 4.8e-7 on the probabilities), which is why training, whose
line searches compare the loss of both passes, keeps the direct convolution.

Which layers. 2 <= k <= 5 and at least MIN_MAPS maps in and out: n3's and n4's convolutions after the first and
their fc1. The steel net's 8-map layers keep the direct tiles, so its warm-up does not compile these kernels.
``MPFPIPE_WINOGRAD=0`` turns the transform off (the direct convolution's bits everywhere).
"""
import os

import numpy as np
from numba import prange

from ._par import pjit
from ._tiles import pack_forward
from ._wtrans import wino_block, wino_work

POINTS = (0.0, 1.0, -1.0, 0.5, -2.0)  # the finite points, in this order; the last point is infinity
MIN_MAPS = 16  # maps in and out of a layer that runs by F(2, k)
ENV = "MPFPIPE_WINOGRAD"


def enabled() -> bool:
    """Whether predictions may use F(2, k): unless ``MPFPIPE_WINOGRAD=0`` (checked by `_env.check_environment`)."""
    return os.environ.get(ENV, "").strip() != "0"


def applies(cin: int, cout: int, k: int) -> bool:
    """Whether a prediction runs a (cout, cin, k, k) layer by F(2, k) (see the module doc)."""
    return 2 <= k <= len(POINTS) and cin >= MIN_MAPS and cout >= MIN_MAPS and enabled()


def matrices(k: int):
    """(A^T (2, alpha), B^T (alpha, alpha), G (alpha, k)) of F(2, k), float64, alpha = k + 1 (k in 2..5)."""
    if not 2 <= k <= len(POINTS):
        raise ValueError(f"F(2, k) is built for k in 2..{len(POINTS)}, got {k}")
    a = k + 1
    pts = POINTS[:a - 1]

    def evaluation(n):
        V = np.zeros((a, n))
        for i, p in enumerate(pts):
            V[i] = [p ** j for j in range(n)]
        V[a - 1, n - 1] = 1.0  # infinity: the leading coefficient
        return V
    return evaluation(2).T.copy(), np.linalg.inv(evaluation(a)).T.copy(), evaluation(k)


def pack_weights(weight: np.ndarray, dtype) -> np.ndarray:
    """(Cout, C, k, k) -> the alpha transformed kernels (Cout, C, k, 1), each packed by `_tiles.pack_forward`, one
    after the other: (alpha * packed size,)."""
    k = weight.shape[-1]
    _, _, G = matrices(k)
    u = np.einsum("ak,ocyk->aocy", G, np.asarray(weight, np.float64))
    return np.concatenate([pack_forward(u[a][..., None].astype(dtype), dtype) for a in range(k + 1)])


def pack(weight: np.ndarray, dtype) -> np.ndarray:
    """What the kernels take as ``wz``: B^T (alpha x alpha), A^T (2 x alpha), then `pack_weights`, in one array."""
    AT, BT, _ = matrices(weight.shape[-1])
    return np.concatenate([BT.reshape(-1).astype(dtype), AT.reshape(-1).astype(dtype), pack_weights(weight, dtype)])


@pjit(cache=True)
def conv_fwd_wino(x, wz, k, rows, y, threads):
    """y (Cout, F, oh, ow) = conv(x, W) (no bias, no activation) for x (C, F, h, w) by F(2, k), with wz =
    `pack`(W): row blocks of ``rows`` output rows dealt round-robin to ``threads`` threads. The kernels' own
    block step (`_wtrans.wino_block`) on its own, for the tests."""
    C, F, h, W = x.shape
    O, _, oh, ow = y.shape
    xf = x.reshape(-1)
    yf = y.reshape(-1)
    per_f = max(1, oh // rows)
    nblk = F * per_f
    nt = min(threads, nblk)
    for t in prange(nt):
        work = wino_work(k, C, O, oh // per_f + 1, (ow + 1) // 2, xf)
        for blk in range(t, nblk, nt):
            f = blk // per_f
            j = blk % per_f
            r0 = j * oh // per_f
            R = (j + 1) * oh // per_f - r0
            wino_block(xf, f * h * W + r0 * W, W, R, C, F * h * W, wz, k, O, work, oh // per_f + 1,
                       yf[f * oh * ow + r0 * ow:], F * oh * ow, ow, ow)


def conv_forward_wino(x: np.ndarray, weight: np.ndarray, rows: int = 4, threads: int | None = None) -> np.ndarray:
    """conv(x, weight) by F(2, k) along the rows, for x (C, F, h, w) and weight (Cout, C, k, k), Cout >= 6, in
    blocks of ``rows`` output rows; see the module doc."""
    from numba import get_num_threads
    C, F, h, w = x.shape
    cout, cin, k, _ = weight.shape
    y = np.zeros((cout, F, h - k + 1, w - k + 1), x.dtype)
    conv_fwd_wino(np.ascontiguousarray(x), pack(weight, x.dtype), k, rows, y, threads or get_num_threads())
    return y
