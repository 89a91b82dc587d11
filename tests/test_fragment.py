"""Fragment mode == patch mode: outputs at every pixel and summed gradients, against the naive reference."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import naive
from mpfpipe.arch import FC, Conv, Net, Pool, preset, window_for_extent
from mpfpipe.fragment import dense_forward, dense_loss_grad
from mpfpipe.loss import balanced_weights
from mpfpipe.params import init_params, to_torch_layout


def small(name, **kw):
    return preset(name, maps=kw.pop("maps", 3), hidden=kw.pop("hidden", 5), **kw)


def rand_params(net, seed):
    p = init_params(net, seed, np.float64)
    rng = np.random.default_rng(seed + 100)
    # non-zero biases so bias gradients and activations are exercised
    return {k: (v + 0.1 * rng.standard_normal(v.shape) if k.endswith("bias") else v * 2.0) for k, v in p.items()}


CASES = [
    ("n4", dict(), (21, 19)),
    ("n3", dict(in_channels=2), (14, 13)),
    ("steel", dict(n_classes=3), (9, 11)),
    ("steel", dict(in_channels=2, act="stanh"), (5, 4)),
]


@pytest.mark.parametrize("name,kw,size", CASES)
def test_dense_output_equals_patch_net_at_every_pixel(name, kw, size):
    net = small(name, **kw)
    params = rand_params(net, 1)
    rng = np.random.default_rng(2)
    image = rng.standard_normal((net.in_channels, *size))
    dense = dense_forward(net, params, image, dtype=np.float64)
    ref = naive.image_outputs(net, to_torch_layout(net, params), image)
    assert dense.shape == (net.n_classes, *size)
    np.testing.assert_allclose(dense, ref, rtol=0, atol=1e-10)


def _labels(net, size, seed, ignore_frac=0.0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, net.n_classes, size=size).astype(np.uint8)
    labels[rng.random(size) < ignore_frac] = 255
    return labels


def _check_grad(net, params, image, labels, weights):
    got = dense_loss_grad(net, params, image, labels, class_weights=weights, dtype=np.float64)
    loss, ref = naive.image_loss_grad(net, to_torch_layout(net, params), image, labels, weights)
    assert got.loss == pytest.approx(loss, rel=1e-10)
    got_t = to_torch_layout(net, got.grad)
    # relative to the gradient's overall size: a tensor whose gradient is ~0 is compared at that scale
    scale = max(np.abs(g).max() for g in ref.values()) + 1e-30
    for k in ref:
        np.testing.assert_allclose(got_t[k], ref[k], rtol=0, atol=1e-9 * scale, err_msg=k)


@pytest.mark.parametrize("name,kw,size", CASES[:3])
@pytest.mark.parametrize("balanced,ignore", [(False, 0.0), (True, 0.3)])
def test_fragment_gradient_equals_sum_of_patch_gradients(name, kw, size, balanced, ignore):
    net = small(name, **kw)
    params = rand_params(net, 3)
    image = np.random.default_rng(4).standard_normal((net.in_channels, *size))
    labels = _labels(net, size, 5, ignore)
    weights = None
    if balanced:
        counts = np.bincount(labels[labels != 255], minlength=net.n_classes)
        weights = balanced_weights(counts)
    _check_grad(net, params, image, labels, weights)


def test_finite_differences():
    net = small("steel", maps=2, hidden=3)
    params = rand_params(net, 6)
    image = np.random.default_rng(7).standard_normal((1, 7, 6))
    labels = _labels(net, (7, 6), 8, 0.2)
    g = dense_loss_grad(net, params, image, labels, dtype=np.float64).grad
    rng = np.random.default_rng(9)
    eps = 1e-6
    for name in params:
        for _ in range(3):
            i = tuple(rng.integers(0, s) for s in params[name].shape)
            plus = {k: v.copy() for k, v in params.items()}
            minus = {k: v.copy() for k, v in params.items()}
            plus[name][i] += eps
            minus[name][i] -= eps
            fd = (dense_loss_grad(net, plus, image, labels, dtype=np.float64, grad=False).loss
                  - dense_loss_grad(net, minus, image, labels, dtype=np.float64, grad=False).loss) / (2 * eps)
            assert g[name][i] == pytest.approx(fd, rel=1e-5, abs=1e-7), (name, i)


def test_ties_relu_zeros_and_shared_maxima():
    """ReLU nets with negative biases produce many exact zeros, so pooling windows hold equal maxima and
    neighbouring MPF offsets share the same arg-max; gradients must still match the patch net."""
    net = Net((Conv(3, 3, "relu"), Pool(2), Conv(2, 3, "relu"), Pool(2), FC(4, "relu"), FC(2, "linear")), window=0)
    params = rand_params(net, 10)
    params["conv1.bias"] = params["conv1.bias"] - 0.8
    image = np.random.default_rng(11).standard_normal((1, 10, 9))
    image[:, 3:7, 2:6] = 0.25  # a flat patch: equal conv outputs, ties inside pooling windows
    labels = _labels(net, (10, 9), 12)
    _check_grad(net, params, image, labels, None)
    # the test must actually exercise ties
    from mpfpipe.fragment import padded_input
    from mpfpipe.kernels import conv_forward
    x, _ = padded_input(net, image, np.float64)
    y = conv_forward(x, params["conv1.weight"], params["conv1.bias"], "relu")
    assert (y == 0).mean() > 0.2


@st.composite
def exact_nets(draw):
    layers = []
    for _ in range(draw(st.integers(1, 2))):
        for _ in range(draw(st.integers(1, 2))):
            layers.append(Conv(draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.sampled_from(
                ["tanh", "stanh", "relu", "linear"]))))
        layers.append(Pool(draw(st.integers(2, 3))))
    if draw(st.booleans()):
        layers.append(Conv(draw(st.integers(1, 3)), 2, "tanh"))
    if draw(st.booleans()):
        layers.append(FC(draw(st.integers(1, 4)), "tanh"))
    layers.append(FC(draw(st.integers(2, 3)), "linear"))
    e = draw(st.integers(1, 2))
    window = window_for_extent(layers, e)
    return Net(tuple(layers), in_channels=draw(st.integers(1, 2)), window=window)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=exact_nets(), h=st.integers(1, 9), w=st.integers(1, 9), seed=st.integers(0, 1000))
def test_random_exact_architectures(net, h, w, seed):
    params = rand_params(net, seed)
    image = np.random.default_rng(seed).standard_normal((net.in_channels, h, w))
    dense = dense_forward(net, params, image, dtype=np.float64)
    ref = naive.image_outputs(net, to_torch_layout(net, params), image)
    np.testing.assert_allclose(dense, ref, rtol=0, atol=1e-10)
    labels = _labels(net, (h, w), seed, 0.2)
    if (labels != 255).any():
        _check_grad(net, params, image, labels, None)


def test_float32_close_to_float64_and_deterministic():
    net = small("n3")
    params = rand_params(net, 13)
    image = np.random.default_rng(14).standard_normal((1, 40, 37))
    labels = _labels(net, (40, 37), 15)
    a = dense_loss_grad(net, params, image, labels, dtype=np.float32)
    b = dense_loss_grad(net, params, image, labels, dtype=np.float32)
    c = dense_loss_grad(net, params, image, labels, dtype=np.float64)
    assert a.loss == b.loss
    for k in a.grad:
        assert np.array_equal(a.grad[k], b.grad[k]), k
        np.testing.assert_allclose(a.grad[k], c.grad[k], rtol=2e-3, atol=2e-3 * np.abs(c.grad[k]).max())


def test_fused_output_path_is_exact():
    """With more maps, n3's fc1 runs on the GEMM (tap) path and fc2 is fused into it (network.fused_output): dense
    outputs and gradients still equal the naive patch network's."""
    from mpfpipe.network import fused_output
    net = small("n3", maps=4, hidden=40)
    assert fused_output(net)
    params = rand_params(net, 21)
    image = np.random.default_rng(22).standard_normal((1, 14, 11))
    dense = dense_forward(net, params, image, dtype=np.float64)
    ref = naive.image_outputs(net, to_torch_layout(net, params), image)
    np.testing.assert_allclose(dense, ref, rtol=0, atol=1e-10)
    _check_grad(net, params, image, _labels(net, (14, 11), 23, 0.2), None)


def test_shipped_workflow_net_at_full_size_equals_patch_net():
    """The NEU-Seg workflow's own net (68x68 window, three 2x2 pools, 8 maps, fc 100), as its YAML describes it:
    outputs at every pixel and the summed gradient equal the naive patch net's."""
    from pathlib import Path

    import yaml

    from mpfpipe.arch import load_net
    spec = yaml.safe_load((Path(__file__).resolve().parents[1] / "workflows" / "neu-seg-steel.yaml").read_text())
    net = load_net(spec["params"]["net"])
    assert net.window == 68 and [getattr(layer, 'maps', getattr(layer, 'n', None)) for layer in net.layers] == \
        [8, None, 8, None, 8, None, 8, 100, 2]
    params = rand_params(net, 6)
    image = np.random.default_rng(7).standard_normal((1, 7, 6))
    dense = dense_forward(net, params, image, dtype=np.float64)
    np.testing.assert_allclose(dense, naive.image_outputs(net, to_torch_layout(net, params), image), rtol=0,
                               atol=1e-10)
    _check_grad(net, params, image, _labels(net, (7, 6), 8, 0.2), None)
