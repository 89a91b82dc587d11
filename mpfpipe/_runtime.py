"""Process settings that the engine's speed depends on.

glibc's malloc returns big freed blocks to the kernel (munmap / heap trim) and faults fresh pages in on the next
allocation; a training step allocates and frees gigabytes, so on these VMs the page faults cost as much as the
arithmetic (n4 512x512 training step: 5.3 s default, 3.8 s with freed memory kept). The knobs must be in the
environment when a process starts, so the CLI re-executes itself once with them, and Dask worker processes we
start get them before they are spawned.
"""
from __future__ import annotations

import os
import sys

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 34), "MALLOC_TRIM_THRESHOLD_": str(1 << 34),
              "MALLOC_TOP_PAD_": str(1 << 30)}
# NUMBA_NUM_THREADS is deliberately not among them: Numba re-reads it at every compilation and refuses a value
# that differs from its running pool, which a Nanny's environment handling can produce. Workers get
# MPFPIPE_THREADS instead, applied with numba.set_num_threads by the engine (`apply_thread_limit`).
THREAD_VARS = ("MPFPIPE_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def worker_env(threads: int) -> dict:
    """Environment for a worker process: its compute threads, malloc keeping freed memory, and the reproducible
    mode's switch when it is on (`_reproducible.mode_env`)."""
    from ._reproducible import mode_env
    return {**{var: str(threads) for var in THREAD_VARS}, **MALLOC_ENV, **mode_env()}


def apply_thread_limit() -> None:
    """Use MPFPIPE_THREADS Numba threads in the calling thread (set for Dask workers by `worker_env`)."""
    from ._env import positive_int
    n = positive_int("MPFPIPE_THREADS")
    if n:
        import numba
        numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))


def prespawn_config() -> dict:
    """dask.config settings that make a Nanny set the malloc knobs before it spawns the worker process. Only
    those: the Nanny sets pre-spawn variables in *its own* process (ours, for a LocalCluster), where thread
    counts would clash with Numba's already-started pool; they go through the Nanny's ``env`` instead."""
    import dask
    current = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    preload = [p for p in dask.config.get("distributed.worker.preload", default=[]) or [] if p != _PRELOAD]
    return {"distributed.nanny.pre-spawn-environ": {**current, **MALLOC_ENV},
            "distributed.worker.preload": [*preload, _PRELOAD]}  # workers leave Ctrl-C to the driver


_PRELOAD = "mpfpipe._worker_init"


def reexec_with_tuned_malloc(argv: list[str]) -> None:
    """Re-run this command with the malloc knobs set, unless they are set already or MPFPIPE_NO_REEXEC is."""
    if os.environ.get("MPFPIPE_NO_REEXEC") or all(os.environ.get(k) == v for k, v in MALLOC_ENV.items()):
        return
    env = {**os.environ, **MALLOC_ENV, "MPFPIPE_NO_REEXEC": "1"}
    try:
        os.execve(sys.executable, [sys.executable, "-m", "mpfpipe", *argv], env)
    except OSError:
        return  # cannot re-execute (unusual interpreter setup): run as is, only slower
