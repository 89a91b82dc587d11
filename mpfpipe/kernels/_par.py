"""Parallel kernels compiled as twins: a serial build for processes that run one thread, a ``parallel=True`` build
for the others, each compiled only when first called.

Why. Numba compiles a ``parallel=True`` function about three times slower than the same code without it
(measured on the development VM: the direct convolution's forward pass 1.5 s against 0.45 s; a steel training
step's kernels ~20 s of one core against ~8 s), and a fresh worker pays that before its first task. The default
cluster runs one thread per worker process, where a parallel build buys nothing: those processes now compile and
load only the serial twins, and the parallel twins are compiled the first time a process runs with more threads.

Exactness. Both twins are built from the same Python function: in the serial one ``prange`` is a plain ``range``
over the same jobs, each job runs the same code and writes its own outputs, and cross-job reductions go through the
kernels' fixed slabs (`_head.SLABS`). So a result does not depend on which twin ran (tests/kernels/test_par.py
checks every kernel bit for bit).

The serial twin is a copy of the function under another qualified name, because Numba's on-disk cache is keyed by
the function's name and line, not by its compile flags: two builds under one name would overwrite each other's
cache entries.
"""
from __future__ import annotations

import functools
import threading
import types
from contextlib import contextmanager

from numba import get_num_threads, njit

_MODE = threading.local()  # "serial" / "parallel" forced by `variant`, else chosen from the thread count
VARIANTS = ("serial", "parallel")


def current_variant() -> str:
    """The twin a kernel call from this thread runs: forced by `variant`, else serial at one Numba thread."""
    forced = getattr(_MODE, "mode", None)
    if forced:
        return forced
    return "serial" if get_num_threads() == 1 else "parallel"


@contextmanager
def variant(mode: str):
    """Force one twin in this thread (the warm-up compiles both; the tests compare them)."""
    if mode not in VARIANTS:
        raise ValueError(f"kernel variant {mode!r}: choose from {', '.join(VARIANTS)}")
    old = getattr(_MODE, "mode", None)
    _MODE.mode = mode
    try:
        yield
    finally:
        _MODE.mode = old


def _renamed(f, suffix: str):
    g = types.FunctionType(f.__code__, f.__globals__, f.__name__ + suffix, f.__defaults__, f.__closure__)
    g.__qualname__ = f.__qualname__ + suffix
    g.__module__ = f.__module__
    g.__doc__ = f.__doc__
    return g


class Twin:
    """A kernel with a serial and a parallel build; calling it runs the one `current_variant` names."""

    def __init__(self, py_func, **opts):
        functools.update_wrapper(self, py_func)
        self.serial = njit(**opts)(_renamed(py_func, "__serial"))
        self.parallel = njit(parallel=True, **opts)(py_func)

    def __call__(self, *args):
        return (self.serial if current_variant() == "serial" else self.parallel)(*args)


def pjit(**opts):
    """Decorator for a kernel with a ``prange`` loop: `Twin` (``opts`` as for ``njit``, e.g. cache, fastmath;
    ``nogil`` defaults to True, as for every mpfpipe kernel: see `mpfpipe.kernels`)."""
    opts.setdefault("nogil", True)
    return lambda f: Twin(f, **opts)
