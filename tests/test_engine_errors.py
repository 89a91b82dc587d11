"""Bad input to the engine API (fragment, patch, params, loss): each is one clear error naming what is wrong,
raised before any computation, never a wrong number or a NumPy / Numba error from deep inside."""
from __future__ import annotations

import numpy as np
import pytest

from mpfpipe.arch import preset
from mpfpipe.errors import DataError
from mpfpipe.fragment import dense_forward, dense_logits_padded, dense_loss_grad
from mpfpipe.loss import xent
from mpfpipe.params import from_torch_layout, init_params, n_params, ravel, to_torch_layout, unravel
from mpfpipe.patch import extract_windows, patch_forward

NET = preset("steel", maps=2, hidden=3)
PARAMS = init_params(NET, 0)


@pytest.mark.parametrize("image,needle", [
    (np.zeros((1, 1, 8, 8)), "must be (H, W) or (C, H, W)"),
    (np.zeros((2, 8, 8)), "has 2 channel(s), the net expects 1"),
    (np.zeros((1, 0, 8)), "empty image"),
    (np.full((8, 8), np.nan), "NaN or infinite"),
    (np.full((8, 8), np.inf), "NaN or infinite"),
])
def test_dense_forward_refuses_bad_images(image, needle):
    with pytest.raises(DataError) as exc:
        dense_forward(NET, PARAMS, image)
    assert needle in str(exc.value)


def test_dense_loss_grad_and_padded_regions():
    with pytest.raises(DataError, match=r"labels of shape \(8, 9\) do not match the image \(8, 8\)"):
        dense_loss_grad(NET, PARAMS, np.zeros((8, 8)), np.zeros((8, 9), np.uint8))
    with pytest.raises(DataError, match="label value 5 is not a class of this 2-class net"):
        dense_loss_grad(NET, PARAMS, np.zeros((8, 8)), np.full((8, 8), 5, np.uint8))
    with pytest.raises(DataError, match="smaller than the 34x34 window"):
        dense_logits_padded(NET, PARAMS, np.zeros((1, 33, 40)))
    with pytest.raises(DataError, match=r"must be \(C=1, h \+ 33, w \+ 33\)"):
        dense_logits_padded(NET, PARAMS, np.zeros((3, 40, 40)))
    with pytest.raises(DataError, match="NaN or infinite"):
        dense_logits_padded(NET, PARAMS, np.full((1, 40, 40), np.nan))


def test_patch_mode_refuses_wrong_windows():
    with pytest.raises(DataError, match=r"windows must be \(B, 1, 34, 34\), got \(2, 1, 33, 34\)"):
        patch_forward(NET, PARAMS, np.zeros((2, 1, 33, 34)))
    win = extract_windows(NET, np.arange(100.0).reshape(10, 10), np.array([[0, 0], [9, 9]]))
    assert win.shape == (2, 1, 34, 34)
    assert win[0, 0, 16, 16] == 0.0 and win[1, 0, 16, 16] == 99.0  # each window centred on its pixel


def test_params_round_trip_and_errors():
    vec = ravel(NET, PARAMS)
    assert vec.size == n_params(NET) and vec.dtype == np.float64
    with pytest.raises(ValueError, match=f"parameter vector has {vec.size - 1} values, the net needs {vec.size}"):
        unravel(NET, vec[:-1])
    torch = to_torch_layout(NET, PARAMS)
    back = from_torch_layout(NET, torch)
    assert all(np.array_equal(back[k], PARAMS[k]) for k in PARAMS)
    del torch["fc1.bias"]
    with pytest.raises(KeyError, match="fc1.bias"):
        from_torch_layout(NET, torch)
    torch = to_torch_layout(NET, PARAMS)
    torch["conv1.weight"] = torch["conv1.weight"][:1]
    with pytest.raises(ValueError, match=r"tensor conv1.weight has shape \(1, 1, 7, 7\), expected \(2, 1, 7, 7\)"):
        from_torch_layout(NET, torch)


def test_xent_refuses_bad_labels_and_weights():
    logits = np.zeros((2, 3, 4), np.float32)
    labels = np.zeros((3, 4), np.uint8)
    loss, count, errors, d = xent(logits, labels)
    assert count.tolist() == [12, 0] and loss[0] == pytest.approx(12 * np.log(2), rel=1e-6)
    with pytest.raises(DataError, match=r"labels of shape \(4, 3\) do not match the output \(3, 4\)"):
        xent(logits, labels.T)
    with pytest.raises(DataError, match="label value 7 is not a class of this 2-class net"):
        xent(logits, np.full((3, 4), 7, np.uint8))
    with pytest.raises(ValueError, match="class_weights must have 2 values"):
        xent(logits, labels, class_weights=[1.0])
    for bad in ([np.nan, 1.0], [1.0, -1.0], [np.inf, 1.0]):
        with pytest.raises(ValueError, match="must be finite and >= 0"):
            xent(logits, labels, class_weights=bad)
