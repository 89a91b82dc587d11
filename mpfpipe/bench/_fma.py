"""The machine's float32 fused multiply-add peak: what the cores can do, beside what numpy's BLAS does.

Why. `matmul_peak` is numpy's BLAS at its best shape, and BLAS libraries are not equally tuned for every CPU: on
an AMD EPYC (Zen 4) VM, OpenBLAS's kernel (SkylakeX) reached 174-195 GFLOP/s on two cores while this loop reached
218-227 and onnxruntime's convolutions about 216. A share of the BLAS peak then overstates how close a runtime is to
the machine; the share of this peak does not.

The loop is `kernels._peak`'s: 12 independent chains of vector FMAs per thread, on registers only.
"""
from __future__ import annotations

import time

import numpy as np

from ..kernels import FMA_CHAINS, FLOAT32_LANES, fma_chains
from .export import median_time


def fma_peak(threads: int, seconds: float = 0.3, repeat: int = 5) -> dict:
    """float32 FMA GFLOP/s of ``threads`` threads at once (the median of ``repeat`` runs of about ``seconds``)."""
    import numba
    old = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        L = FLOAT32_LANES
        a = np.full((threads, (FMA_CHAINS + 2) * L), 1e-9, np.float32)
        fma_chains(a, 1000)
        t0 = time.perf_counter()
        fma_chains(a, 1_000_000)
        n = max(1000, int(1_000_000 * seconds / max(time.perf_counter() - t0, 1e-6)))
        s = median_time(lambda: fma_chains(a, n), repeat)
    finally:
        numba.set_num_threads(old)
    return {"case": "fma_peak", "threads": threads, "iterations": n, "seconds": round(s, 6),
            "gflops": round(threads * n * FMA_CHAINS * L * 2 / s / 1e9, 2)}
