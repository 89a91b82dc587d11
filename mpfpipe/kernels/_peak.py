"""The cores' float32 FMA peak loop (`mpfpipe.bench._fma` times it): each thread runs `CHAINS` independent chains
of 64-byte vector FMAs (`_simd`: one AVX-512 register, two AVX2 ones) on registers only, enough to cover the FMA
latency of current x86 cores; no memory traffic."""
from numba import njit, prange

from ._simd import BYTES, lanes, vbcast, vfma, vload, vstore, vzero

CHAINS = 12
FLOAT32_LANES = BYTES // 4


@njit(cache=True, nogil=True)
def _chains(a, n):
    x, w = vload(a, 0), vbcast(a, 1)
    c0, c1, c2, c3, c4, c5 = vzero(a), vzero(a), vzero(a), vzero(a), vzero(a), vzero(a)
    c6, c7, c8, c9, c10, c11 = vzero(a), vzero(a), vzero(a), vzero(a), vzero(a), vzero(a)
    for _ in range(n):
        c0, c1, c2, c3 = vfma(w, x, c0), vfma(w, x, c1), vfma(w, x, c2), vfma(w, x, c3)
        c4, c5, c6, c7 = vfma(w, x, c4), vfma(w, x, c5), vfma(w, x, c6), vfma(w, x, c7)
        c8, c9, c10, c11 = vfma(w, x, c8), vfma(w, x, c9), vfma(w, x, c10), vfma(w, x, c11)
    L = lanes(a)  # stored: the chains are not dead code
    for i, c in enumerate((c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11)):
        vstore(a, (i + 1) * L, c)


@njit(cache=True, parallel=True, nogil=True)
def fma_chains(a, n):
    """``n`` rounds of the `CHAINS` FMA chains on each row of ``a`` (float32, one row per thread, at least
    (CHAINS + 1) * FLOAT32_LANES wide), the rows in parallel."""
    for t in prange(a.shape[0]):
        _chains(a[t], n)
