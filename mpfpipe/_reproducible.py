"""Reproducible mode: the same bits on every worker of a mixed CPU pool (AVX2 and AVX-512 nodes).

What depends on the instruction set, and what does not:
- our Numba kernels: no. Every vectorised reduction uses explicit fixed-width vectors (`kernels._simd`: 16 float32
  / 8 float64 lanes, ``llvm.fma``, lanes summed in a fixed order) and no kernel is compiled with fastmath, so LLVM
  has nothing to reassociate or contract; an AVX2 build splits each vector in two registers and computes the same
  bits (tests/kernels/test_tiles.py and tests/test_reproducible.py compare a ``NUMBA_CPU_NAME=haswell`` build
  with the host's). This holds in the default mode.
- OpenBLAS (the fc head's GEMMs, the fused output layer's, the tap GEMMs of patch mode): yes. scipy's OpenBLAS picks
  a kernel per CPU when it loads (SkylakeX, Haswell, Zen, ...), each with its own blocking and summation order. In
  reproducible mode `kernels._blas.gemm` runs `kernels._rgemm` instead: explicit-lane GEMMs in a fixed order.
  (Pinning ``OPENBLAS_CORETYPE`` would also do, but only where it is set before the library loads, which a
  worker of an external cluster, or a process that imported numpy or scipy first, cannot promise.)
- the optimiser's dot products and norms (mpfpipe.train.optim) and the loss's class sum: no; they are numpy's
  pairwise sums (`dot`), not BLAS.
- glibc's exp / log / tanh (the loss, float64 activations) choose an FMA variant on CPUs with FMA: the same on
  every AVX2 and AVX-512 node (a pre-Haswell node without FMA could differ in the last bit).

The switch: ``MPFPIPE_REPRODUCIBLE=1`` in the environment when the kernels load (``mpfpipe train --reproducible``
sets it for the run and the workers it starts; start an external cluster's workers with it), or `enable`.
"""
from __future__ import annotations

import os
import sys

ENV = "MPFPIPE_REPRODUCIBLE"


def enabled() -> bool:
    return os.environ.get(ENV, "") not in ("", "0")


def mode_env() -> dict:
    """The mode's variables for a process we start (empty when the mode is off)."""
    return {ENV: "1"} if enabled() else {}


def enable() -> None:
    """Switch the mode on in this process (its kernels, if loaded) and for the processes it starts."""
    os.environ[ENV] = "1"
    if "mpfpipe.kernels" in sys.modules:  # loaded: switch them now (a later import reads the variable)
        from .kernels import set_reproducible
        set_reproducible(True)


def active() -> bool:
    """Whether this process's kernels run the fixed-order GEMMs now."""
    from .kernels import reproducible_active
    return reproducible_active()


def blas_cores() -> list[str]:
    """The kernel ("architecture") of each OpenBLAS this process has loaded, e.g. ['Haswell', 'SkylakeX']."""
    from threadpoolctl import threadpool_info
    return sorted({str(i.get("architecture")) for i in threadpool_info() if i.get("internal_api") == "openblas"})


def describe_host() -> dict:
    """What decides a worker's bits: the CPU, the target its Numba kernels are compiled for (``NUMBA_CPU_NAME`` or
    the host), its vector extensions, the OpenBLAS kernels it loaded and whether the mode is on. Run on each
    worker by `check_pool`."""
    import llvmlite.binding as ll
    feats = ll.get_host_cpu_features()
    isa = "AVX-512" if feats.get("avx512f") else "AVX2" if feats.get("avx2") else "pre-AVX2"
    cpu = ll.get_host_cpu_name()
    return {"cpu": f"{cpu} ({isa})", "numba": os.environ.get("NUMBA_CPU_NAME") or cpu,
            "blas": ",".join(blas_cores()) or "none", "reproducible": active()}


def pool_line(hosts: dict) -> str | None:
    """One line on what a pool's CPUs mean for reproducibility, from `describe_host` of each worker
    ({worker: description}); None when every worker has the same CPU, kernels target and BLAS kernel."""
    if not hosts:
        return None
    def kinds(key):
        counts: dict = {}
        for h in hosts.values():
            counts[h[key]] = counts.get(h[key], 0) + 1
        return ", ".join(f"{n} x {k}" for k, n in sorted(counts.items()))
    blas = {h["blas"] for h in hosts.values()}
    targets = {(h["cpu"], h["numba"]) for h in hosts.values()}
    if len(targets) == 1 and len(blas) == 1:
        return None
    what = f"workers on different CPUs ({kinds('cpu')}; OpenBLAS kernels {kinds('blas')})"
    if all(h["reproducible"] for h in hosts.values()):
        return f"{what}: reproducible mode is on (fixed-order GEMMs instead of OpenBLAS), so gradients and " \
               "weights are bit-identical whichever worker computes them"
    if len(blas) == 1:
        return f"{what}: they share one OpenBLAS kernel and our kernels give the same bits on any of them, so " \
               "gradients and weights are bit-identical whichever worker computes them"
    return f"{what}: a gradient's last bits depend on which worker computed it (OpenBLAS's kernel) and chunks go " \
           "to workers by timing, so weights may differ between runs; --reproducible " \
           f"({ENV}=1 on every worker) makes them agree bit for bit"


def check_pool(client, reproducible: bool = False) -> str | None:
    """`pool_line` for the workers of a Dask client (their descriptions gathered with ``client.run``); with
    ``reproducible``, first switch the mode on in every worker (`enable`), so that workers of an external cluster
    started without ``MPFPIPE_REPRODUCIBLE`` run it too."""
    if reproducible:
        client.run(enable)
    return pool_line(client.run(describe_host))


def dot(a, b) -> float:
    """a . b for float64 vectors, as numpy's pairwise sum of the products: a fixed order on every CPU (numpy's
    ``@`` calls OpenBLAS's ddot, whose kernel and so its summation order depend on the CPU)."""
    import numpy as np
    return float(np.add.reduce(np.multiply(a, b)))
