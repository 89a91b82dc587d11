"""Fragment (dense) mode: whole image in, the patch network's output at every pixel out, and its exact gradient.

For an H x W image the output is padded up to H' x W' (multiples of the stride S) and the input is mirrored to
(H'+w-1) x (W'+w-1) around the image (``numpy.pad`` mode ``symmetric``: the edge pixel is repeated), so the window
of output pixel (y, x) is the mirrored w x w window whose centre, at offset (w-1)//2, is image pixel (y, x). MPF
layers keep every pooling offset as a fragment; at the end the S^2 fragments are stitched into the dense map and
cropped back to H x W. The backward pass runs the same path in reverse; pixels outside the image get no gradient.
A 3D net takes a (C, Z, Y, X) or (Z, Y, X) volume instead, the same way along z too (`volume`).
"""
from __future__ import annotations

import numpy as np

from ._reproducible import dot
from . import volume
from .arch import PAD_MODE, Net  # noqa: F401 - PAD_MODE: also its old import path
from .errors import DataError
from .kernels import stitch, unstitch
from .loss import IGNORE, LossGrad, softmax, xent
from .network import Tape, backward, cast_params, forward


def as_chw(net: Net, image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3:
        raise DataError(f"an image must be (H, W) or (C, H, W), got shape {image.shape}")
    if image.shape[0] != net.in_channels:
        raise DataError(f"the image has {image.shape[0]} channel(s), the net expects {net.in_channels}")
    if image.shape[1] < 1 or image.shape[2] < 1:
        raise DataError(f"empty image of shape {image.shape}")
    return image


def padded_input(net: Net, image: np.ndarray, dtype=np.float32) -> tuple[np.ndarray, tuple[int, int]]:
    """Mirror-pad a (C, H, W) image for dense mode; returns (x (C, 1, H'+w-1, W'+w-1), (H', W'))."""
    if net.ndim == 3:
        return volume.padded_input(net, image, dtype)
    image = as_chw(net, image)
    _, H, W = image.shape
    S = net.stride
    Hp, Wp = -(-H // S) * S, -(-W // S) * S
    before, after = net.halo
    x = np.pad(np.asarray(image, dtype=dtype), ((0, 0), (before, Hp - H + after), (before, Wp - W + after)),
               mode=PAD_MODE)
    if not np.isfinite(x).all():
        raise DataError("the image contains NaN or infinite values")
    return np.ascontiguousarray(x[:, None]), (Hp, Wp)


def dense_logits(net: Net, params: dict, image: np.ndarray, dtype=np.float32, tape: Tape | None = None):
    """Logits (K, H, W) of the patch network at every pixel of a (C, H, W) or (H, W) image."""
    if net.ndim == 3:
        return volume.dense_logits(net, params, image, dtype, tape)
    image = as_chw(net, image)
    H, W = image.shape[1:]
    x, _ = padded_input(net, image, dtype)
    frag = forward(net, cast_params(params, dtype), x, dense=True, tape=tape, winograd=True)
    return stitch(frag, net.pools)[:, :H, :W]


def dense_forward(net: Net, params: dict, image: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Class probabilities (K, H, W): pixel (y, x) is the patch network's softmax on the window centred there."""
    return softmax(dense_logits(net, params, image, dtype))


def dense_loss_grad(net: Net, params: dict, image: np.ndarray, labels: np.ndarray, *, class_weights=None,
                    ignore_index: int = IGNORE, dtype=np.float32, grad: bool = True) -> LossGrad:
    """Loss of the per-pixel cross-entropy over one image and (if ``grad``) its exact gradient: the sum over all
    windows of the patch network's gradients, in one forward/backward pass."""
    if net.ndim == 3:
        return volume.dense_loss_grad(net, params, image, labels, class_weights=class_weights,
                                      ignore_index=ignore_index, dtype=dtype, grad=grad)
    image = as_chw(net, image)
    H, W = image.shape[1:]
    labels = np.asarray(labels)
    if labels.shape != (H, W):
        raise DataError(f"labels of shape {labels.shape} do not match the image ({H}, {W})")
    tape = Tape(dense=True) if grad else None
    p = cast_params(params, dtype)
    x, (Hp, Wp) = padded_input(net, image, dtype)
    frag = forward(net, p, x, dense=True, tape=tape)
    K = net.n_classes
    logits = stitch(frag, net.pools)[:, :H, :W]
    closs, ccount, cerr, dlog = xent(logits, labels, class_weights, ignore_index, grad=grad)
    w = np.ones(K) if class_weights is None else np.asarray(class_weights, dtype=np.float64)
    loss = dot(w, closs)  # not BLAS: the same bits on every CPU
    grads = None
    if grad:
        full = np.zeros((K, Hp, Wp), dtype=dtype)
        full[:, :H, :W] = dlog
        grads = backward(net, p, tape, unstitch(full, net.pools))
    return LossGrad(loss, closs, ccount, cerr, grads)


def dense_logits_padded(net: Net, params: dict, padded: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Logits (K, h, w) of a region whose context is already in ``padded`` (C, h+w_win-1, w+w_win-1): the caller
    supplies ``net.halo`` = (before, after) rows/columns around the region (e.g. read from a larger volume and
    mirrored only at the volume's edge). Only the bottom/right are padded here, up to a multiple of the stride;
    those rows and columns feed outputs that are cropped, so their values do not matter. Blockwise segmentation
    uses this to get exactly `dense_logits` of the whole image, block by block."""
    if net.ndim == 3:
        return volume.dense_logits_padded(net, params, padded, dtype)
    padded = np.asarray(padded)
    if padded.ndim == 2:
        padded = padded[None]
    if padded.ndim != 3 or padded.shape[0] != net.in_channels:
        raise DataError(f"a padded region must be (C={net.in_channels}, h + {net.window - 1}, w + {net.window - 1}), "
                        f"got shape {padded.shape}")
    ctx = net.window - 1
    h, w = padded.shape[1] - ctx, padded.shape[2] - ctx
    if h < 1 or w < 1:
        raise DataError(f"a padded region of shape {padded.shape} is smaller than the {net.window}x{net.window} window")
    S = net.stride
    Hp, Wp = -(-h // S) * S, -(-w // S) * S
    x = np.asarray(padded, dtype=dtype)
    if Hp > h or Wp > w:
        x = np.pad(x, ((0, 0), (0, Hp - h), (0, Wp - w)), mode=PAD_MODE)
    if not np.isfinite(x).all():
        raise DataError("the image contains NaN or infinite values")
    frag = forward(net, cast_params(params, dtype), np.ascontiguousarray(x[:, None]), dense=True, winograd=True)
    return stitch(frag, net.pools)[:, :h, :w]
