"""Patch mode (fast kernels, batches of windows) against the naive reference, and against fragment mode."""
import numpy as np

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
