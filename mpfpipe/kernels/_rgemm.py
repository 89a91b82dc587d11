"""GEMM with a summation order fixed by the code, for the reproducible mode (`mpfpipe._reproducible`).

OpenBLAS picks its kernel per CPU when it loads (SkylakeX on an AVX-512 node, Haswell on an AVX2 one), each with
its own blocking of the reduction and so its own rounding: the fc head's GEMMs then differ in the last bits between
nodes. Here every product is a fixed-width vector (`_simd`: 16 float32 / 8 float64 lanes) with ``llvm.fma``:
- ``C = op(A) B``: each vector of a row of C is one chain of FMAs over the reduction index in order (the A element
  broadcast), four vectors at a time for independent chains; columns past the last whole vector in float64 scalars;
- ``C = A B^T`` (both operands contiguous along the reduction, e.g. a weight gradient over pixels): four dot
  products at a time, one vector accumulator each, lanes summed in a fixed order (`vsum`), the tail in float64.
The same bits on any x86-64 CPU with FMA, at some cost in speed (see `_reproducible`). The same arguments as
`_blas.gemm`, restricted to what the kernels pass: alpha = 1, beta 0 or 1, not both operands transposed.
"""
from numba import njit

from ._simd import lanes, sload, sstore, vadd, vbcast, vfma, vload, vstore, vsum, vzero


@njit(cache=True, inline="always")
def _put(c, q, acc, beta):
    if beta != 0.0:
        acc = vadd(acc, vload(c, q))
    vstore(c, q, acc)


@njit(cache=True, nogil=True)
def _rgemm_nb(trans_a, m, n, k, a, lda, b, ldb, beta, c, ldc):
    """C (m, n) = op(A) (m, k) B (k, n) + beta C, row-major with leading dimensions."""
    L = lanes(c)
    for i in range(m):
        sa, sk = (i, lda) if trans_a else (i * lda, 1)  # op(A)[i, kk] = a.flat[sa + kk * sk]
        j = 0
        while j + 4 * L <= n:
            a0, a1, a2, a3 = vzero(c), vzero(c), vzero(c), vzero(c)
            for kk in range(k):
                av = vbcast(a, sa + kk * sk)
                p = kk * ldb + j
                a0, a1 = vfma(av, vload(b, p), a0), vfma(av, vload(b, p + L), a1)
                a2, a3 = vfma(av, vload(b, p + 2 * L), a2), vfma(av, vload(b, p + 3 * L), a3)
            q = i * ldc + j
            _put(c, q, a0, beta)
            _put(c, q + L, a1, beta)
            _put(c, q + 2 * L, a2, beta)
            _put(c, q + 3 * L, a3, beta)
            j += 4 * L
        while j + L <= n:
            a0 = vzero(c)
            for kk in range(k):
                a0 = vfma(vbcast(a, sa + kk * sk), vload(b, kk * ldb + j), a0)
            _put(c, i * ldc + j, a0, beta)
            j += L
        while j < n:
            s = 0.0
            for kk in range(k):
                s += float(sload(a, sa + kk * sk)) * float(sload(b, kk * ldb + j))
            if beta != 0.0:
                s += float(sload(c, i * ldc + j))
            sstore(c, i * ldc + j, s)
            j += 1


@njit(cache=True, inline="always")
def _dot_tail(a, ia, b, jb, p, k, s):
    while p < k:
        s += float(sload(a, ia + p)) * float(sload(b, jb + p))
        p += 1
    return s


@njit(cache=True, nogil=True)
def _rgemm_bt(m, n, k, a, lda, b, ldb, beta, c, ldc):
    """C (m, n) = A (m, k) B^T + beta C, B (n, k): dot products of rows, contiguous along k."""
    L = lanes(c)
    kv = k // L * L
    for i in range(m):
        ia = i * lda
        j = 0
        while j < n:
            if j + 4 <= n:
                a0, a1, a2, a3 = vzero(c), vzero(c), vzero(c), vzero(c)
                jb = j * ldb
                for p in range(0, kv, L):
                    av = vload(a, ia + p)
                    a0, a1 = vfma(av, vload(b, jb + p), a0), vfma(av, vload(b, jb + ldb + p), a1)
                    a2, a3 = vfma(av, vload(b, jb + 2 * ldb + p), a2), vfma(av, vload(b, jb + 3 * ldb + p), a3)
                s = (_dot_tail(a, ia, b, jb, kv, k, vsum(a0)), _dot_tail(a, ia, b, jb + ldb, kv, k, vsum(a1)),
                     _dot_tail(a, ia, b, jb + 2 * ldb, kv, k, vsum(a2)),
                     _dot_tail(a, ia, b, jb + 3 * ldb, kv, k, vsum(a3)))
                for t in range(4):
                    q = i * ldc + j + t
                    sstore(c, q, s[t] + float(sload(c, q)) if beta != 0.0 else s[t])
                j += 4
            else:
                a0 = vzero(c)
                jb = j * ldb
                for p in range(0, kv, L):
                    a0 = vfma(vload(a, ia + p), vload(b, jb + p), a0)
                s0 = _dot_tail(a, ia, b, jb, kv, k, vsum(a0))
                q = i * ldc + j
                sstore(c, q, s0 + float(sload(c, q)) if beta != 0.0 else s0)
                j += 1


@njit(cache=True, nogil=True)
def rgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """`_blas.gemm` in a fixed summation order (alpha must be 1, beta 0 or 1, not both transposed)."""
    if alpha != 1.0 or (beta != 0.0 and beta != 1.0) or (trans_a and trans_b):
        raise ValueError("rgemm: alpha = 1, beta 0 or 1, and not both operands transposed")
    if trans_b:
        _rgemm_bt(m, n, k, a, lda, b, ldb, beta, c, ldc)
    else:
        _rgemm_nb(trans_a, m, n, k, a, lda, b, ldb, beta, c, ldc)
