"""`_wino` / `_wtrans`: F(2, k) along the rows against the naive convolution (float64), its float32 error against
the direct convolution's, the transform matrices by hand, the bits on one and two threads; and the inference
kernels that run it (the fused conv + pool, the fused output pair): bit for bit the transform's convolution
followed by the usual bias, activation and pool, on either twin, any thread count and any blocking."""
import numba
import numpy as np
import pytest
from numba import set_num_threads

import mpfpipe.kernels._conv as conv
from mpfpipe.kernels import _par, bias_act_forward, conv_forward_post, conv_pool_forward, pool_forward
from mpfpipe.kernels._wino import MIN_MAPS, applies, conv_forward_wino, matrices
from tests import naive


def _naive(x, w):
    return np.stack([np.stack([naive.conv(x[:, f], w, np.zeros(w.shape[0]))[o] for f in range(x.shape[1])])
                     for o in range(w.shape[0])])


def test_f23_matrices_by_hand():
    # points 0, 1, -1 and infinity: the classic F(2, 3) up to the scaling of its rows
    AT, BT, G = matrices(3)
    assert np.array_equal(AT, [[1, 1, 1, 0], [0, 1, -1, 1]])
    assert np.allclose(BT, [[1, 0, -1, 0], [0, 0.5, 0.5, 0], [0, -0.5, 0.5, 0], [0, -1, 0, 1]])
    assert np.array_equal(G, [[1, 0, 0], [1, 1, 1], [1, -1, 1], [0, 0, 1]])
    d, g = np.array([1.0, 2.0, 4.0, 8.0]), np.array([3.0, 5.0, 7.0])
    assert np.array_equal(AT @ ((G @ g) * (BT @ d)), [1 * 3 + 2 * 5 + 4 * 7, 2 * 3 + 4 * 5 + 8 * 7])


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_matrices_compute_the_correlation(k):
    AT, BT, G = matrices(k)
    rng = np.random.default_rng(k)
    d, g = rng.standard_normal(k + 1), rng.standard_normal(k)
    assert np.allclose(AT @ ((G @ g) * (BT @ d)), [d[j:j + k] @ g for j in range(2)], atol=1e-13)


# (C, F, h, w, Cout, k): odd and even output widths, Cout not a multiple of 6, n3 / n4 layer shapes cut down
SHAPES = [(7, 2, 20, 37, 13, 4), (6, 3, 30, 41, 8, 5), (9, 5, 17, 45, 100, 3), (48, 2, 30, 94, 48, 4),
          (6, 1, 12, 200, 6, 2)]


@pytest.mark.parametrize("shape", SHAPES)
def test_float64_equals_the_naive_convolution(shape):
    C, F, h, w, O, k = shape
    rng = np.random.default_rng(sum(shape))
    x, W = rng.standard_normal((C, F, h, w)), rng.standard_normal((O, C, k, k))
    assert np.allclose(conv_forward_wino(x, W), _naive(x, W), rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_float32_error_at_the_direct_convolutions_level(shape):
    from mpfpipe.kernels import conv_forward
    C, F, h, w, O, k = shape
    rng = np.random.default_rng(sum(shape) + 1)
    x, W = rng.standard_normal((C, F, h, w)), rng.standard_normal((O, C, k, k)) / np.sqrt(C * k * k)
    ref = _naive(x, W)
    x32, W32 = x.astype(np.float32), W.astype(np.float32)
    direct = np.abs(conv_forward(x32, W32, np.zeros(O, np.float32), "linear") - ref).max()
    wino = np.abs(conv_forward_wino(x32, W32) - ref).max()
    assert wino <= 2.5 * direct


def test_same_bits_on_one_and_two_threads():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((12, 4, 40, 57)).astype(np.float32)
    W = rng.standard_normal((14, 12, 4, 4)).astype(np.float32)
    old = numba.get_num_threads()
    try:
        set_num_threads(1)
        one = conv_forward_wino(x, W, threads=1)
        set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = conv_forward_wino(x, W, threads=2)
    finally:
        set_num_threads(old)
    assert np.array_equal(one, two)


# (C, F, h, w, Cout, k, p, dense): n3's conv2 (k 4, p 2) and n4's conv2 (k 5) in small, a 3x3 pool, patch mode
# (one offset), fragments of a few rows (a plane shorter than a tile), maps not a multiple of 6
POOL_SHAPES = [(48, 3, 30, 36, 48, 4, 2, True), (16, 4, 41, 45, 20, 5, 2, True), (17, 2, 28, 31, 16, 3, 3, True),
               (16, 5, 21, 25, 18, 2, 2, False), (16, 9, 6, 40, 16, 4, 2, True)]


def _threads():
    return (("serial", 1), ("parallel", min(2, numba.config.NUMBA_NUM_THREADS)), ("parallel", 1))


@pytest.mark.parametrize("shape", POOL_SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_conv_pool_equals_the_transforms_convolution_then_pool_bit_for_bit(shape, dtype, monkeypatch):
    C, F, h, w, O, k, p, dense = shape
    assert applies(C, O, k)
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal((C, F, h, w)).astype(dtype)
    wt = (rng.standard_normal((O, C, k, k)) / np.sqrt(C * k * k)).astype(dtype)
    b = rng.standard_normal(O).astype(dtype)
    old = numba.get_num_threads()
    try:
        for act in ("tanh", "relu"):
            z = conv_forward_wino(x, wt)
            bias_act_forward(z.reshape(O, -1), b, act)
            ref, _ = pool_forward(z, p, dense, need_idx=False)
            direct = conv_pool_forward(x, wt, b, act, p, dense)
            assert not np.array_equal(ref, direct) and np.allclose(ref, direct, rtol=0, atol=1e-5)
            for rows in (conv.WINO_ROWS, 1, 5):  # the bits do not depend on the blocks
                monkeypatch.setattr(conv, "WINO_ROWS", rows)
                for mode, threads in _threads():
                    numba.set_num_threads(threads)
                    with _par.variant(mode):
                        y = conv_pool_forward(x, wt, b, act, p, dense, winograd=True)
                    np.testing.assert_array_equal(y, ref, err_msg=f"{act} {rows} {mode} {threads}")
    finally:
        numba.set_num_threads(old)


@pytest.mark.parametrize("shape", POOL_SHAPES[:3])
def test_fused_conv_pool_matches_naive_conv_and_window_max_in_float64(shape):
    C, F, h, w, O, k, p, dense = shape
    rng = np.random.default_rng(8)
    x = rng.standard_normal((C, F, h, w))
    wt = rng.standard_normal((O, C, k, k)) / np.sqrt(C * k * k)
    b = rng.standard_normal(O)
    y = conv_pool_forward(x, wt, b, "tanh", p, dense, winograd=True)
    np.testing.assert_allclose(y, naive.conv_pool(x, wt, b, "tanh", p, dense), rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", [(48, 4, 11, 11, 100, 3), (48, 2, 9, 12, 200, 3), (16, 3, 7, 40, 17, 4)])
def test_fused_output_pair_by_the_transform(shape):
    """n3's fc1 + fc2 (3x3 on 11x11 fragments, 100 maps) and n4's (200 maps) in small: float64 against the naive
    layers; float32 the same bits on either twin and any thread count, and the training pair's values."""
    C, F, h, w, O, k = shape
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal((C, F, h, w))
    wt = rng.standard_normal((O, C, k, k)) / np.sqrt(C * k * k)
    b = rng.standard_normal(O)
    wp, bp = rng.standard_normal((2, O, 1, 1)) / np.sqrt(O), rng.standard_normal(2)
    y, z = conv_forward_post(x, wt, b, "tanh", wp, bp, keep=False, winograd=True)
    assert y is None
    ref = np.stack([naive.conv(naive.act(naive.conv(x[:, f], wt, b), "tanh"), wp, bp) for f in range(F)], axis=1)
    np.testing.assert_allclose(z, ref, rtol=0, atol=1e-12)
    x32, wt32, b32, wp32, bp32 = (a.astype(np.float32) for a in (x, wt, b, wp, bp))
    _, train = conv_forward_post(x32, wt32, b32, "tanh", wp32, bp32)
    old = numba.get_num_threads()
    try:
        runs = []
        for mode, threads in _threads():
            numba.set_num_threads(threads)
            with _par.variant(mode):
                runs.append(conv_forward_post(x32, wt32, b32, "tanh", wp32, bp32, keep=False, winograd=True)[1])
    finally:
        numba.set_num_threads(old)
    assert all(np.array_equal(runs[0], r) for r in runs)
    assert not np.array_equal(runs[0], train) and np.allclose(runs[0], train, rtol=0, atol=2e-6)


def test_which_layers_run_by_the_transform(monkeypatch):
    assert applies(48, 48, 4) and applies(48, 200, 3) and applies(MIN_MAPS, MIN_MAPS, 2) and applies(16, 16, 5)
    assert not applies(8, 8, 5)  # steel's layers: the direct tiles
    assert not applies(48, 48, 6) and not applies(48, 48, 1)  # only F(2, k) for k in 2..5 is built
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((16, 1, 20, 20)).astype(np.float32), rng.standard_normal((16, 16, 4, 4)) / 8
    w = w.astype(np.float32)
    b = np.zeros(16, np.float32)
    direct = conv_pool_forward(x, w, b, "tanh", 2, True)
    assert not np.array_equal(conv_pool_forward(x, w, b, "tanh", 2, True, winograd=True), direct)
    monkeypatch.setenv("MPFPIPE_WINOGRAD", "0")  # the switch: the direct convolution's bits everywhere
    assert not applies(48, 48, 4)
    assert np.array_equal(conv_pool_forward(x, w, b, "tanh", 2, True, winograd=True), direct)


@pytest.mark.parametrize("name,size", [("n3", (16, 15)), ("n4", (10, 9))])
def test_full_size_presets_predict_by_the_transform_as_the_naive_patch_net(name, size, monkeypatch):
    """n3 and n4 at full size (48 maps), float64: the prediction, with its convolutions after the first by F(2, k),
    at every pixel, and the training pass's loss and gradient, against tests/naive.py's patch net. (fc1's fragments
    are too short for the tiles at these sizes; tests/kernels/test_tiles.py runs it by F(2, k) at 130 x 121 and
    150 x 139 against the tap GEMMs.)"""
    from mpfpipe.arch import load_net
    from mpfpipe.kernels import _wino
    from mpfpipe.warmup import ensure_warm
    net = load_net(name)
    ensure_warm(net, np.float64, True)  # a stale kernel cache is rebuilt by running jobs: their layers not counted
    packed = []
    real = _wino.pack
    monkeypatch.setattr(_wino, "pack", lambda w, dt: packed.append(w.shape) or real(w, dt))
    naive.assert_dense_equals_patch_net(net, size=size, seed=12)
    assert packed == [(48, 48, k, k) for k in {"n3": (4, 4), "n4": (5, 4, 4)}[name]]
