"""3D nets in fragment mode (mpfpipe.volume, mpfpipe.network3) == the naive 3D patch net (tests/naive.py): outputs at
every voxel, borders included, and gradients summed over all windows; finite differences; blocks; thread counts."""
import numba
import numpy as np
import pytest

import naive
from mpfpipe.arch import FC, Conv, Net, Pool, preset
from mpfpipe.fragment import dense_forward, dense_logits, dense_logits_padded, dense_loss_grad
from mpfpipe.kernels import _par
from mpfpipe.params import init_params
from mpfpipe.plan import fused_output, head_start, kernel_families

FUSED = Net((Conv((2, 2, 2), 12), Pool((2, 2, 2)), FC(8), FC(3, "linear")), window=(5, 5, 5))  # fc1 on 2x2x2
CASES = [
    # pools (2,2,2), (2,1,1); a (2,3,3) and a (1,2,2) conv; the fc layers as a head
    ("mixed", Net((Conv((2, 3, 3), 3), Pool((2, 2, 2)), Conv((1, 2, 2), 4), Pool((2, 1, 1)), FC(5),
                   FC(2, "linear"))), (3, 5, 4)),
    # ELEKTRONN2's layout with 6 maps: the register tiles on the 3D convs, (1,2,2) and (2,1,1) pools
    ("aniso", preset("aniso", maps=6, hidden=8), (3, 5, 6)),
    # ZNNi's layout with 4 maps: a 3x3x3 fc1 as the output layer, three 2x2x2 MPF layers
    ("n337", preset("n337", maps=4), (2, 3, 2)),
    ("fused", FUSED, (3, 4, 3)),
    ("channels", Net((Conv((3, 2, 2), 3, "stanh"), Pool((1, 2, 2)), FC(3, "linear")), in_channels=2), (4, 3, 3)),
    # 3 z-slabs x 50 maps: more than the direct kernels take, too few inputs for the tiles: the tap GEMMs
    ("taps", Net((Conv((3, 2, 2), 50), Pool((1, 2, 2)), FC(2, "linear"))), (3, 3, 4)),
]


def test_the_cases_cover_every_kernel_path():
    assert fused_output(FUSED) and not fused_output(CASES[0][1])
    assert head_start(CASES[0][1]) < len(CASES[0][1].ops) and head_start(preset("n337")) == len(preset("n337").ops)
    assert {"tiles", "zpool", "direct"} <= kernel_families(CASES[1][1])
    assert "post" in kernel_families(FUSED) and "taps" in kernel_families(CASES[-1][1])


@pytest.mark.parametrize("name,net,size", CASES, ids=[c[0] for c in CASES])
def test_dense_equals_patch_net_at_every_voxel_and_summed_gradients(name, net, size):
    naive.assert_dense_equals_patch_net3(net, size, seed=1, labelled=0.7)


def test_ties_relu_zeros_share_maxima_in_3d():
    """Exact zeros from ReLU and a flat block: pool windows hold equal maxima, in z as well as in y, x."""
    net = Net((Conv((2, 2, 2), 3, "relu"), Pool((2, 2, 2)), FC(4, "relu"), FC(2, "linear")))
    got = naive.assert_dense_equals_patch_net3(net, (4, 4, 3), seed=2, act_scale=0.3)
    assert got.class_count.sum() > 0
    from mpfpipe.kernels import conv_forward
    from mpfpipe.network3 import unfold
    from mpfpipe.volume import padded_input
    x, _ = padded_input(net, np.zeros((1, 4, 4, 3)), np.float64)
    y = conv_forward(unfold(x, 2), np.ones((3, 2, 2, 2)), np.full(3, -1.0), "relu")
    assert (y == 0).all()  # a relu net on a flat volume: every pool window is all ties


def test_finite_differences_3d():
    net = Net((Conv((2, 2, 2), 2), Pool((2, 1, 1)), Conv((1, 2, 2), 2), FC(3), FC(2, "linear")))
    rng = np.random.default_rng(6)
    params = {k: v * 2 + 0.1 * rng.standard_normal(v.shape) for k, v in init_params(net, 6, np.float64).items()}
    vol = rng.standard_normal((1, 4, 3, 5))
    labels = rng.integers(0, 2, (4, 3, 5)).astype(np.uint8)
    g = dense_loss_grad(net, params, vol, labels, dtype=np.float64).grad
    eps = 1e-6
    for name in params:
        for _ in range(2):
            i = tuple(rng.integers(0, s) for s in params[name].shape)
            plus = {k: v.copy() for k, v in params.items()}
            minus = {k: v.copy() for k, v in params.items()}
            plus[name][i] += eps
            minus[name][i] -= eps
            fd = (dense_loss_grad(net, plus, vol, labels, dtype=np.float64, grad=False).loss
                  - dense_loss_grad(net, minus, vol, labels, dtype=np.float64, grad=False).loss) / (2 * eps)
            assert g[name][i] == pytest.approx(fd, rel=1e-5, abs=1e-7), (name, i)


def test_blocks_with_their_halo_give_the_whole_volume():
    """`dense_logits_padded` on blocks read with `halo3` from the mirrored volume == the whole volume at once (to
    rounding: a block's fragment size may pick another kernel, which sums in another order, as in 2D)."""
    net = CASES[1][1]
    params = init_params(net, 3, np.float64)
    vol = np.random.default_rng(3).standard_normal((1, 5, 9, 7))
    whole = dense_logits(net, params, vol, dtype=np.float64)
    pad = [(0, 0)] + list(net.halo3)
    mirrored = np.pad(vol, pad, mode="symmetric")
    ctx = [w - 1 for w in net.window3]
    out = np.zeros_like(whole)
    for z0, y0, x0 in np.ndindex(2, 2, 2):
        z = slice(z0 * 3, min(5, z0 * 3 + 3))
        y = slice(y0 * 5, min(9, y0 * 5 + 5))
        x = slice(x0 * 4, min(7, x0 * 4 + 4))
        block = mirrored[:, z.start:z.stop + ctx[0], y.start:y.stop + ctx[1], x.start:x.stop + ctx[2]]
        out[:, z, y, x] = dense_logits_padded(net, params, block, dtype=np.float64)
    np.testing.assert_allclose(out, whole, rtol=0, atol=1e-12)


def _run(net, mode, threads):
    numba.set_num_threads(threads)
    rng = np.random.default_rng(4)
    vol = rng.standard_normal((1, 5, 13, 11)).astype(np.float32)
    lab = (rng.random((5, 13, 11)) > 0.6).astype(np.uint8)
    p = init_params(net, 1, np.float64)
    with _par.variant(mode):
        return dense_loss_grad(net, p, vol, lab, dtype=np.float32), dense_forward(net, p, vol, dtype=np.float32)


@pytest.mark.parametrize("net", [CASES[1][1], FUSED, CASES[-1][1]], ids=["aniso", "fused", "taps"])
def test_bit_identical_on_1_and_2_threads(net):
    old = numba.get_num_threads()
    try:
        r1, o1 = _run(net, "serial", 1)
        r2, o2 = _run(net, "parallel", min(2, numba.config.NUMBA_NUM_THREADS))
        r3, o3 = _run(net, "parallel", 1)
    finally:
        numba.set_num_threads(old)
    assert r1.loss == r2.loss == r3.loss and np.array_equal(o1, o2) and np.array_equal(o1, o3)
    for k in r1.grad:
        assert np.array_equal(r1.grad[k], r2.grad[k]) and np.array_equal(r1.grad[k], r3.grad[k]), k


def test_a_2d_volume_of_the_wrong_rank_is_refused():
    from mpfpipe.errors import DataError
    with pytest.raises(DataError, match=r"a volume must be \(Z, Y, X\) or \(C, Z, Y, X\)"):
        dense_forward(CASES[0][1], init_params(CASES[0][1], 0), np.zeros((4, 5)))


# -- the full-size presets: the acceptance check of issue 26 (minutes: the naive net runs n337's 86^3 windows) ------
@pytest.mark.slow
@pytest.mark.parametrize("name,size,labelled", [("aniso", (2, 3, 2), 0.3), ("n337", (1, 1, 2), 1.0)])
def test_full_size_presets_equal_the_patch_net(name, size, labelled):
    got = naive.assert_dense_equals_patch_net3(preset(name), size, seed=5, labelled=labelled, act_scale=1.0)
    assert got.class_count.sum() >= 1


def test_block_gradients_sum_to_the_whole_volume():
    """The distributed gradient's unit on a large volume: output blocks with their input halo. Summed, the blocks'
    losses and gradients are the whole volume's (to rounding), and the per-class counts exactly."""
    from mpfpipe.volume import dense_loss_grad_padded
    net = CASES[0][1]
    rng = np.random.default_rng(8)
    params = init_params(net, 8, np.float64)
    vol = rng.standard_normal((1, 6, 7, 5))
    labels = rng.integers(0, 2, (6, 7, 5)).astype(np.uint8)
    labels[rng.random(labels.shape) < 0.2] = 255
    whole = dense_loss_grad(net, params, vol, labels, dtype=np.float64)
    mirrored = np.pad(vol, [(0, 0)] + list(net.halo3), mode="symmetric")
    ctx = [w - 1 for w in net.window3]
    loss, count, grads = 0.0, 0, {k: np.zeros_like(v) for k, v in whole.grad.items()}
    for z, y in np.ndindex(2, 2):  # 3 x 4 (3 x 3 at the end) x 5 blocks
        zs, ys = slice(3 * z, 3 * z + 3), slice(4 * y, min(7, 4 * y + 4))
        block = mirrored[:, zs.start:zs.stop + ctx[0], ys.start:ys.stop + ctx[1], :]
        part = dense_loss_grad_padded(net, params, block, labels[zs, ys], dtype=np.float64)
        loss += part.loss
        count = count + part.class_count
        for k in grads:
            grads[k] += part.grad[k]
    assert loss == pytest.approx(whole.loss, rel=1e-12) and np.array_equal(count, whole.class_count)
    for k in grads:
        np.testing.assert_allclose(grads[k], whole.grad[k], rtol=0, atol=1e-10 * np.abs(whole.grad[k]).max(), err_msg=k)


def test_the_forward_pass_unfolds_in_runs_with_the_same_bits(monkeypatch):
    """Inference on a large block unfolds the z-slabs a few output planes at a time: the same bits as at once."""
    from mpfpipe import network3
    net = CASES[1][1]
    params = init_params(net, 2, np.float32)
    vol = np.random.default_rng(2).standard_normal((1, 6, 9, 8)).astype(np.float32)
    whole = dense_forward(net, params, vol)
    monkeypatch.setattr(network3, "UNFOLD_BYTES", 1)  # one output plane per conv call
    runs = dense_forward(net, params, vol)
    assert np.array_equal(runs, whole)
    calls = []
    real = network3.conv_forward
    monkeypatch.setattr(network3, "conv_forward", lambda *a: calls.append(a[0].shape) or real(*a))
    dense_forward(net, params, vol)
    assert len(calls) > len([op for op in net.ops if getattr(op, "kz", 0) > 1])  # really in runs


def test_both_passes_in_runs_still_equal_the_patch_net_and_the_same_bits_on_any_threads(monkeypatch):
    from mpfpipe import network3
    monkeypatch.setattr(network3, "UNFOLD_BYTES", 1)  # every conv with kz > 1, forward and backward, plane by plane
    naive.assert_dense_equals_patch_net3(CASES[2][1], CASES[2][2], seed=3, labelled=0.5)  # n337's layout
    old = numba.get_num_threads()
    try:
        r1, _ = _run(CASES[1][1], "serial", 1)
        r2, _ = _run(CASES[1][1], "parallel", min(2, numba.config.NUMBA_NUM_THREADS))
    finally:
        numba.set_num_threads(old)
    assert r1.loss == r2.loss and all(np.array_equal(r1.grad[k], r2.grad[k]) for k in r1.grad)
