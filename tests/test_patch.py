"""Patch mode (fast kernels, batches of windows) against the naive reference, and against fragment mode."""
import numpy as np
import pytest

import naive
from mpfpipe.arch import preset
from mpfpipe.fragment import dense_loss_grad
from mpfpipe.params import init_params, to_torch_layout
from mpfpipe.patch import extract_windows, image_patch_loss_grad, patch_forward


def test_patch_forward_matches_naive():
    net = preset("n3", maps=3, hidden=4, n_classes=3)
    params = init_params(net, 0, np.float64)
    image = np.random.default_rng(1).standard_normal((1, 12, 10))
    centres = np.array([[0, 0], [11, 9], [5, 3], [2, 8]])
    probs = patch_forward(net, params, extract_windows(net, image, centres, dtype=np.float64), dtype=np.float64)
    ref = naive.image_outputs(net, to_torch_layout(net, params), image)
    np.testing.assert_allclose(probs, ref[:, centres[:, 0], centres[:, 1]].T, atol=1e-12)


def test_patch_trainer_gradient_equals_fragment_gradient():
    net = preset("steel", maps=3, hidden=5)
    params = init_params(net, 2, np.float64)
    rng = np.random.default_rng(3)
    image = rng.standard_normal((1, 17, 13))
    labels = rng.integers(0, 2, size=(17, 13)).astype(np.uint8)
    labels[rng.random(labels.shape) < 0.2] = 255
    a = image_patch_loss_grad(net, params, image, labels, batch=37, dtype=np.float64)
    b = dense_loss_grad(net, params, image, labels, dtype=np.float64)
    assert a.loss == np.float64(b.loss) or abs(a.loss - b.loss) < 1e-9 * abs(b.loss)
    assert np.array_equal(a.class_count, b.class_count)
    for k in b.grad:
        np.testing.assert_allclose(a.grad[k], b.grad[k], rtol=1e-9, atol=1e-9 * np.abs(b.grad[k]).max())


def test_3d_patch_mode_matches_naive_and_sums_to_the_fragment_gradient():
    from mpfpipe.arch import FC, Conv, Net, Pool
    from mpfpipe.patch import patch_loss_grad
    net = Net((Conv((2, 3, 3), 3), Pool((2, 2, 2)), Conv((1, 2, 2), 4), Pool((2, 1, 1)), FC(5), FC(2, "linear")))
    params = init_params(net, 4, np.float64)
    rng = np.random.default_rng(5)
    vol = rng.standard_normal((1, 3, 4, 5))
    labels = rng.integers(0, 2, size=(3, 4, 5)).astype(np.uint8)
    voxels = list(np.ndindex(3, 4, 5))
    windows = np.stack([naive.mirror_window3(vol, *v, net.window3) for v in voxels])
    probs = patch_forward(net, params, windows, dtype=np.float64)
    ref, _, _ = naive.volume_pass(net, to_torch_layout(net, params), vol)
    np.testing.assert_allclose(probs, np.stack([ref[(slice(None), *v)] for v in voxels]), rtol=0, atol=1e-12)
    a = patch_loss_grad(net, params, windows, np.array([labels[v] for v in voxels]), dtype=np.float64)
    b = dense_loss_grad(net, params, vol, labels, dtype=np.float64)
    assert abs(a.loss - b.loss) < 1e-10 * abs(b.loss) and np.array_equal(a.class_count, b.class_count)
    for k in b.grad:
        np.testing.assert_allclose(a.grad[k], b.grad[k], rtol=0, atol=1e-10 * np.abs(b.grad[k]).max(), err_msg=k)


def test_windows_of_images_are_for_2d_nets():
    from mpfpipe.arch import preset
    from mpfpipe.errors import DataError
    from mpfpipe.patch import mirrored
    with pytest.raises(DataError, match="n337 is a 3D net: windows of images are cut for 2D nets only"):
        mirrored(preset("n337"), np.zeros((4, 8, 8), np.float32))
