"""Inference's fused convolution + max pooling (kernels._convpool): bit for bit the two kernels run apart, on either
twin and any thread count, against the naive convolution and a numpy window max in float64, and through the
full-size presets' whole inference (which takes the fused path) against the training forward (which does not)."""
import numba
import numpy as np
import pytest

import naive
import mpfpipe.kernels._conv as conv
from mpfpipe import network
from mpfpipe.arch import load_net
from mpfpipe.fragment import dense_logits
from mpfpipe.kernels import _par, conv_forward, conv_pool_forward, pool_forward
from mpfpipe.network import Tape
from mpfpipe.params import init_params
from mpfpipe.plan import winograd_layers

# (C, F, h, w, Cout, k, p, dense): a first layer (one map, one fragment: split into chunks across threads), n4's
# conv2 shape in small, p = 3 with channel counts off the tile, patch-mode pools (one offset), fragments whose
# chunks are too short for a tile (one chunk per fragment), and row-pair tiles
SHAPES = [(1, 1, 70, 70, 48, 4, 2, True), (48, 4, 41, 43, 48, 5, 2, True), (8, 9, 34, 31, 10, 3, 3, True),
          (6, 5, 37, 45, 7, 2, 2, False), (3, 3, 26, 26, 6, 3, 3, False), (7, 3, 13, 71, 9, 3, 2, True),
          (6, 1, 299, 41, 6, 4, 3, True), (8, 2, 36, 34, 7, 3, 2, False)]  # last: row-pair tiles (32 per row)


def _apart(x, w, b, act, p, dense):
    y, _ = pool_forward(conv_forward(x, w, b, act), p, dense, need_idx=False)
    return y


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("small_blocks", [False, True])
def test_fused_conv_pool_equals_the_two_kernels_bit_for_bit(shape, dtype, small_blocks, monkeypatch):
    if small_blocks:  # blocks of one tile's rows: many blocks per chunk, rows carried at every block
        monkeypatch.setattr(conv, "POOL_BLOCK_COLS", 40)  # read by the Python wrapper, not the kernel
    C, F, h, w, O, k, p, dense = shape
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal((C, F, h, w)).astype(dtype)
    wt = (rng.standard_normal((O, C, k, k)) * 0.3).astype(dtype)
    b = rng.standard_normal(O).astype(dtype)
    old = numba.get_num_threads()
    try:
        for act in ("tanh", "relu"):
            ref = _apart(x, wt, b, act, p, dense)
            for mode, threads in (("serial", 1), ("parallel", min(2, numba.config.NUMBA_NUM_THREADS)),
                                  ("parallel", 1)):
                numba.set_num_threads(threads)
                with _par.variant(mode):
                    y = conv_pool_forward(x, wt, b, act, p, dense)
                assert y is not None and y.shape == ref.shape
                np.testing.assert_array_equal(y, ref, err_msg=f"{act} {mode} {threads}")
    finally:
        numba.set_num_threads(old)


@pytest.mark.parametrize("shape", SHAPES[:4])
def test_fused_conv_pool_matches_naive_conv_and_window_max_in_float64(shape):
    C, F, h, w, O, k, p, dense = shape
    rng = np.random.default_rng(7)
    x = rng.standard_normal((C, F, h, w))
    wt = rng.standard_normal((O, C, k, k)) * 0.3
    b = rng.standard_normal(O)
    y = conv_pool_forward(x, wt, b, "tanh", p, dense)
    np.testing.assert_allclose(y, naive.conv_pool(x, wt, b, "tanh", p, dense), rtol=1e-11, atol=1e-12)


def test_layers_off_the_tiles_or_inexact_pools_are_left_to_the_two_kernels():
    x = np.ones((1, 1, 20, 20), np.float32)
    assert conv_pool_forward(x, np.ones((4, 1, 3, 3), np.float32), np.zeros(4, np.float32), "tanh", 2, True) is None
    w = np.ones((6, 1, 3, 3), np.float32)
    assert conv_pool_forward(x, w, np.zeros(6, np.float32), "tanh", 2, True) is None  # 18 rows: not 2m + 1
    assert conv_pool_forward(x, w, np.zeros(6, np.float32), "tanh", 2, False) is not None  # 18 = 2 * 9


@pytest.mark.parametrize("name", ["steel", "n3", "n4"])
def test_full_size_presets_inference_against_the_training_forward(name, monkeypatch):
    """dense inference (no tape: conv + pool fused wherever the tiles run) against the forward that records a tape
    (the kernels apart, as training runs them), on an image large enough for the tiles at every pool: bit for bit
    without F(2, k) (MPFPIPE_WINOGRAD=0, and steel, which has no layer for it); with it (n3, n4), rounding apart,
    and the same bits on 1 and 2 threads."""
    fused_layers = []

    def spy(*args):
        y = conv_pool_forward(*args)
        fused_layers.append(y is not None)
        return y

    monkeypatch.setattr(network, "conv_pool_forward", spy)
    net = load_net(name)
    rng = np.random.default_rng(5)
    img = rng.standard_normal((net.in_channels, 37, 41)).astype(np.float32)
    params = init_params(net, 2, np.float64)
    old = numba.get_num_threads()
    try:
        for wino in ("0", "1"):
            monkeypatch.setenv("MPFPIPE_WINOGRAD", wino)
            runs = []
            for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
                numba.set_num_threads(threads)
                fused = dense_logits(net, params, img)
                taped = dense_logits(net, params, img, tape=Tape(dense=True))
                assert np.abs(fused).sum() > 0
                if wino == "0" or not winograd_layers(net):
                    np.testing.assert_array_equal(fused, taped)
                else:
                    assert not np.array_equal(fused, taped)  # the transform ran
                    np.testing.assert_allclose(fused, taped, rtol=0, atol=2e-6)  # float32, activations ~1
                runs.append(fused)
            assert all(np.array_equal(runs[0], r) for r in runs)
        assert any(fused_layers)  # the fused kernel ran
    finally:
        numba.set_num_threads(old)
