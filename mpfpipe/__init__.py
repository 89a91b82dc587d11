"""mpfpipe: max-pooling fragment (MPF) training and whole-volume segmentation on CPU clusters.

Masci, Giusti, Ciresan, Fricout & Schmidhuber, "A fast learning algorithm for image segmentation with max-pooling
convolutional networks" (ICIP 2013): one forward/backward pass over a whole image gives exactly the output and
gradient of the patch network at every pixel.

Subpackages load on first use (``import mpfpipe; mpfpipe.train.train(...)``), so ``import mpfpipe`` stays cheap
(no Numba compilation, no Dask) for the CLI and for tools that only read the version.
"""
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pkgutil import iter_modules

try:
    __version__ = version("mpfpipe")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"


def __getattr__(name):
    # any module or subpackage of mpfpipe (no list to keep in step); import_module caches it and sets the attribute
    if not name.startswith("_") and find_spec(f"{__name__}.{name}") is not None:
        return import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | {m.name for m in iter_modules(__path__) if not m.name.startswith("_")})
