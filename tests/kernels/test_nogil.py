"""Every Numba kernel that Python calls releases the GIL (`mpfpipe.kernels` says why); only kernels inlined into
other kernels (``inline="always"``, never called from Python) may leave it out."""
import importlib
import pkgutil

from numba.core.registry import CPUDispatcher

import mpfpipe
from mpfpipe.kernels._par import Twin


def _kernels():
    for info in pkgutil.walk_packages(mpfpipe.__path__, "mpfpipe."):
        if info.name.startswith(("mpfpipe.cli", "mpfpipe.__main__", "mpfpipe.bench._torch_dense")):
            continue  # the CLI, and a script that runs under another Python (with torch)
        mod = importlib.import_module(info.name)
        for name, obj in vars(mod).items():
            if getattr(obj, "__module__", None) != mod.__name__:
                continue  # imported: found in the module that defines it
            if isinstance(obj, Twin):
                yield f"{info.name}.{name}", obj.serial
                yield f"{info.name}.{name} (parallel)", obj.parallel
            elif isinstance(obj, CPUDispatcher):
                yield f"{info.name}.{name}", obj


def test_every_kernel_called_from_python_releases_the_gil():
    found = dict(_kernels())
    assert len(found) > 60  # the kernels, the flood, the agglomeration and the evaluation's flooding
    held = [name for name, d in found.items()
            if d.targetoptions.get("inline", "never") != "always" and not d.targetoptions.get("nogil")]
    assert held == []
