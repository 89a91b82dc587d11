"""The machine's float32 fused multiply-add peak: what the cores can do, beside what numpy's BLAS does.

Why. `matmul_peak` is numpy's BLAS at its best shape, and BLAS libraries are not equally tuned for every CPU: on
an AMD EPYC (Zen 4) VM, OpenBLAS's kernel (SkylakeX) reached 175-195 GFLOP/s on two cores while this loop reached
218-227 and onnxruntime's convolutions about 216. A share of the BLAS peak then overstates how close a runtime is to
the machine; the share of this peak does not.

Each thread runs 12 independent chains of 64-byte vector FMAs (`kernels._simd`: one AVX-512 register, two AVX2
ones) on registers only, enough to cover the FMA latency of current x86 cores; no memory traffic.
"""
from __future__ import annotations

import statistics
import time

import numpy as np
from numba import njit, prange

from ..kernels._simd import BYTES, lanes, vbcast, vfma, vload, vstore, vzero

CHAINS = 12


@njit(cache=True)
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


@njit(cache=True, parallel=True)
def _all_threads(a, n):
    for t in prange(a.shape[0]):
        _chains(a[t], n)


def fma_peak(threads: int, seconds: float = 0.3, repeat: int = 5) -> dict:
    """float32 FMA GFLOP/s of ``threads`` threads at once (the median of ``repeat`` runs of about ``seconds``)."""
    import numba
    old = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        L = BYTES // 4  # float32 lanes of one vector
        a = np.full((threads, (CHAINS + 2) * L), 1e-9, np.float32)
        _all_threads(a, 1000)
        t0 = time.perf_counter()
        _all_threads(a, 1_000_000)
        n = max(1000, int(1_000_000 * seconds / max(time.perf_counter() - t0, 1e-6)))
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            _all_threads(a, n)
            times.append(time.perf_counter() - t0)
    finally:
        numba.set_num_threads(old)
    s = statistics.median(times)
    return {"case": "fma_peak", "threads": threads, "iterations": n, "seconds": round(s, 6),
            "gflops": round(threads * n * CHAINS * L * 2 / s / 1e9, 2)}
