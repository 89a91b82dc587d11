"""Numba's on-disk cache, kept fresh across mpfpipe's modules.

Why. Numba stamps a cached function with its own source file only (numba 0.60: its mtime and size; 0.68: a hash
of its content), but a kernel inlines the
functions it calls from other modules (`kernels._blas.gemm` into `_taps`' kernels, `_regtile`'s tiles into
`_tiles`). After a change to a callee's file alone, as a ``git pull`` into an editable install makes, the caller's
cache entry stays "fresh" and runs the old callee. This was seen: cached `_taps` kernels built against an earlier
`gemm` gave other bits than freshly built ones, and a serial-twin / parallel-twin bit-identity test failed.

How. A cache locator placed first in Numba's list, for mpfpipe's files only: it finds the path and name as Numba's
own locators would (it wraps the one Numba would pick) and adds to the source stamp a hash of every mpfpipe module
that uses Numba. Any change to any of them then makes every mpfpipe cache entry stale, and Numba rebuilds it.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


@functools.cache
def sources_hash() -> str:
    """sha256 over the paths and contents of mpfpipe's modules that use Numba (those whose text names it)."""
    h = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_bytes()
        if b"numba" in text:
            h.update(str(path.relative_to(PACKAGE)).encode() + b"\0" + text + b"\0")
    return h.hexdigest()


def _ours(py_file) -> bool:
    try:
        return Path(py_file).resolve().is_relative_to(PACKAGE)
    except (OSError, ValueError):
        return False


@functools.cache
def install() -> None:
    """Put the locator first in Numba's list (once per process; before the first ``cache=True`` decorator runs)."""
    from numba.core import caching

    class _Stamped(caching._CacheLocator):
        def __init__(self, inner):
            self._inner = inner

        def ensure_cache_path(self):
            return self._inner.ensure_cache_path()

        def get_cache_path(self):
            return self._inner.get_cache_path()

        def get_source_stamp(self):
            return (self._inner.get_source_stamp(), sources_hash())

        def get_disambiguator(self):
            return self._inner.get_disambiguator()

        @classmethod
        def from_function(cls, py_func, py_file):
            if not _ours(py_file):
                return None
            for other in caching.CacheImpl._locator_classes:
                if other is not cls:
                    inner = other.from_function(py_func, py_file)
                    if inner is not None:
                        return cls(inner)
            return None

    caching.CacheImpl._locator_classes = [_Stamped, *caching.CacheImpl._locator_classes]


install()  # on import: the numba modules import this module before their decorators run
