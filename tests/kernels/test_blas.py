"""The BLAS binding the cached kernels use: every transpose combination, strided blocks inside larger arrays,
alpha/beta, both dtypes, and the property it exists for (a kernel calling it caches)."""
import subprocess
import sys

import numpy as np
import pytest
from numba import njit

from mpfpipe.kernels._blas import gemm


@njit
def _block_gemm(ta, tb, A, B, C, m, n, k, alpha, beta, r0, c0):
    # C[r0:r0+m, c0:c0+n] = alpha op(A) op(B) + beta C[...], A and B whole arrays, C written in place by stride
    gemm(ta, tb, m, n, k, alpha, A, A.shape[1], B, B.shape[1], beta, C[r0:, c0:], C.shape[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
def test_gemm_transposes_strides_alpha_beta(dtype, ta, tb):
    rng = np.random.default_rng(1)
    m, n, k = 7, 5, 3
    A = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    B = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    C = rng.standard_normal((11, 13)).astype(dtype)
    want = C.copy()
    opA, opB = (A.T if ta else A), (B.T if tb else B)
    want[2:2 + m, 4:4 + n] = 0.5 * (opA.astype(np.float64) @ opB) + 2.0 * C[2:2 + m, 4:4 + n]
    _block_gemm(ta, tb, A, B, C, m, n, k, 0.5, 2.0, 2, 4)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(C, want, rtol=tol, atol=tol)  # outside the block: untouched (same values)


def test_a_kernel_calling_gemm_is_cached(tmp_path):
    # the reason for the module: np.dot made kernels uncacheable. Compile in one process, load in a second one.
    src = tmp_path / "k.py"
    src.write_text("import numpy as np\nfrom numba import njit\nfrom mpfpipe.kernels._blas import gemm\n"
                   "@njit(cache=True)\ndef f(a, b, c):\n    gemm(False, False, 2, 2, 2, 1.0, a, 2, b, 2, 0.0, c, 2)\n"
                   "a = np.eye(2, dtype=np.float32); c = np.zeros((2, 2), np.float32)\n"
                   "f(a, a * 3, c); assert c[1, 1] == 3.0\n"
                   "print(len(f.stats.cache_hits))\n")
    runs = [subprocess.run([sys.executable, str(src)], capture_output=True, text=True, cwd=tmp_path) for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr
        assert "Cannot cache" not in r.stderr
    assert [r.stdout.split()[-1] for r in runs] == ["0", "1"]
