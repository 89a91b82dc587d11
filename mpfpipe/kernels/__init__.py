"""Numba kernels of the fragment engine (no Dask, no I/O).

Tensors are channel-major, ``(C, F, h, w)``: channel, fragment (or patch), row, column. With that layout a
convolution is one GEMM per kernel tap, ``W[:, :, ky, kx] (Cout, C) @ x shifted (C, n)``, whose result is already the
output's ``(Cout, F*h*w)`` view, and MPF pooling turns ``(C, F, h, w)`` into ``(C, F*p*p, m, n)`` without transposes.
Volume nets run on the same kernels (`mpfpipe.network3`), plus the z pooling of `_zpool` and the 3D stitch.

Every kernel called from Python is compiled with ``nogil=True``: it touches no Python object, so it need not hold
the GIL, and a held GIL would stop the other threads of its process for a whole kernel (n4's conv2: ~0.2 s on a
512x512 slice). A segmentation worker reads the next block and writes the last one on a helper thread (Zarr's
Python code) and runs Dask's event loop (heartbeats) beside the task: they now run while a kernel does.
"""
from .. import _kernel_cache  # noqa: F401 - first: every kernel's cache entry stamped with all their sources
import scipy.linalg.cython_blas  # noqa: F401 - load the BLAS our kernels call (_blas), so it can be limited
from threadpoolctl import ThreadpoolController

from ._act import ACT_CODES, act_backward, bias_act_forward
from ._conv import conv_backward, conv_backward_post, conv_forward, conv_forward_post, conv_pool_forward, use_direct
from ._blas import reproducible_active, set_reproducible
from ._direct import conv_direct_dinput  # on its own for the warm-up (`warmup._job_direct_dx`)
from ._par import VARIANTS, current_variant, variant
from ._peak import CHAINS as FMA_CHAINS, FLOAT32_LANES, fma_chains  # the FMA peak loop (bench)
from ._stitch import stitch, stitch3, unstitch, unstitch3
from ._xent import xent_pass
from ._tiles import OB as TILE_MIN_MAPS  # layers with this many maps in and out can run on the register tiles
from ._head import backward_head, forward_head
from ._wino import applies as winograd_applies  # the layers a prediction runs by F(2, k)
from ._pool import pool_backward, pool_forward
from ._zpool import zpool_backward, zpool_forward

_BLAS = ThreadpoolController()


def single_threaded_blas():
    """Context manager: every BLAS at one thread. Our kernels call BLAS from inside Numba's parallel regions, one
    call per thread; a BLAS with threads of its own would fight Numba's pool for the cores."""
    return _BLAS.limit(limits=1, user_api="blas")


__all__ = ["single_threaded_blas", "FMA_CHAINS", "FLOAT32_LANES", "fma_chains",
           "TILE_MIN_MAPS", "reproducible_active", "set_reproducible", "VARIANTS",
           "current_variant", "variant", "stitch", "unstitch", "stitch3", "unstitch3", "xent_pass",
           "ACT_CODES", "act_backward", "backward_head", "bias_act_forward", "conv_backward",
           "conv_backward_post", "conv_direct_dinput", "conv_forward", "conv_forward_post", "conv_pool_forward",
           "forward_head", "pool_backward", "pool_forward", "use_direct", "winograd_applies", "zpool_backward",
           "zpool_forward"]
