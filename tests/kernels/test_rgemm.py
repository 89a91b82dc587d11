"""The reproducible mode's fixed-order GEMM (kernels._rgemm): against float64 products in every case the kernels
pass (transposes, beta 0 / 1, strided blocks inside larger arrays, vector tails), its run-time switch in
`_blas.gemm`, and the full-size steel net in that mode against the naive patch net; thread-count bit-identity."""
import numba
import numpy as np
import pytest
from numba import njit

import naive
from mpfpipe.arch import load_net
from mpfpipe.fragment import dense_forward, dense_loss_grad
from mpfpipe.kernels import _blas, _par
from mpfpipe.kernels._rgemm import rgemm
from mpfpipe.params import init_params


@njit
def _block(ta, tb, A, B, C, m, n, k, beta, r0, c0):
    # C[r0:r0+m, c0:c0+n] = op(A) op(B) + beta C[...], written in place with C's row stride
    rgemm(ta, tb, m, n, k, 1.0, A, A.shape[1], B, B.shape[1], beta, C[r0:, c0:], C.shape[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("m,n,k", [(7, 70, 9), (3, 5, 33), (100, 80, 8), (2, 37, 512), (5, 16, 1)])
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_rgemm_equals_the_float64_product(dtype, ta, tb, m, n, k, beta):
    rng = np.random.default_rng(m * 1000 + n + k)
    A = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    B = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    C = rng.standard_normal((m + 3, n + 5)).astype(dtype)
    want = C.astype(np.float64)
    want[1:1 + m, 2:2 + n] = (A.T if ta else A).astype(np.float64) @ (B.T if tb else B) + beta * want[1:1 + m, 2:2 + n]
    got = C.copy()
    _block(ta, tb, A, B, got, m, n, k, beta, 1, 2)
    tol = (3e-6 if dtype == np.float32 else 1e-14) * (np.abs(want).max() + k)
    np.testing.assert_allclose(got, want, rtol=0, atol=tol)
    outside = np.ones(C.shape, bool)
    outside[1:1 + m, 2:2 + n] = False
    assert np.array_equal(got[outside], C[outside])  # nothing written outside the block


def test_rgemm_refuses_what_it_does_not_implement():
    a = np.ones((2, 2))
    with pytest.raises(ValueError, match="alpha = 1"):
        rgemm(False, False, 2, 2, 2, 0.5, a, 2, a, 2, 0.0, a.copy(), 2)
    with pytest.raises(ValueError, match="not both"):
        rgemm(True, True, 2, 2, 2, 1.0, a, 2, a, 2, 0.0, a.copy(), 2)


@pytest.fixture
def reproducible():
    old = _blas.reproducible_active()
    _blas.set_reproducible(True)
    yield
    _blas.set_reproducible(old)


@njit
def _gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    _blas.gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)  # an intrinsic: callable from kernels only


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_switches_to_rgemm_at_run_time(reproducible, dtype):
    rng = np.random.default_rng(3)
    A, B = rng.standard_normal((6, 300)).astype(dtype), rng.standard_normal((9, 300)).astype(dtype)
    fixed = np.empty((6, 9), dtype)
    rgemm(False, True, 6, 9, 300, 1.0, A, 300, B, 300, 0.0, fixed, 9)
    got = np.empty_like(fixed)
    _gemm(False, True, 6, 9, 300, 1.0, A, 300, B, 300, 0.0, got, 9)
    assert np.array_equal(got, fixed)
    _blas.set_reproducible(False)  # the same compiled kernel, back on BLAS: the same product, in BLAS's order
    _gemm(False, True, 6, 9, 300, 1.0, A, 300, B, 300, 0.0, got, 9)
    np.testing.assert_allclose(got, fixed, rtol=1e-4 if dtype == np.float32 else 1e-12)


def test_gemm_in_reproducible_mode_refuses_what_rgemm_does_not_implement(reproducible):
    a = np.ones((2, 2))
    for ta, tb, alpha, beta in ((False, False, 0.5, 0.0), (False, False, 1.0, 2.0), (True, True, 1.0, 0.0)):
        with pytest.raises(ValueError, match="reproducible gemm"):
            _gemm(ta, tb, 2, 2, 2, alpha, a, 2, a, 2, beta, a.copy(), 2)


def test_full_size_steel_in_reproducible_mode_equals_the_naive_patch_net(reproducible):
    """The fc head (its GEMMs now `rgemm`) and the whole steel net, float64, against tests/naive.py."""
    net = load_net("steel")
    naive.assert_dense_equals_patch_net(net, size=(40, 36), seed=11)


@pytest.mark.parametrize("name,size", [("steel", (137, 60)), ("n3", (100, 90))])
def test_reproducible_mode_is_bit_identical_serial_and_parallel(reproducible, name, size):
    net = load_net(name)
    rng = np.random.default_rng(4)
    img = rng.standard_normal((net.in_channels, *size))
    lab = (rng.random(size) > 0.6).astype(np.uint8)
    p = init_params(net, 1, np.float64)
    old = numba.get_num_threads()
    runs = []
    try:
        for mode, threads in (("serial", 1), ("parallel", min(2, numba.config.NUMBA_NUM_THREADS))):
            numba.set_num_threads(threads)
            with _par.variant(mode):
                runs.append((dense_loss_grad(net, p, img, lab), dense_forward(net, p, img)))
    finally:
        numba.set_num_threads(old)
    (rs, outs), (rp, outp) = runs
    assert np.array_equal(outs, outp) and rs.loss == rp.loss
    for key in rs.grad:
        assert np.array_equal(rs.grad[key], rp.grad[key]), key
