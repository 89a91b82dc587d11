"""Fragment (dense) mode on volumes: a 3D net's output at every voxel of a (C, Z, Y, X) stack, and its exact gradient.

The 2D scheme of `fragment` along every axis: the output is padded up to (Z', Y', X'), multiples of the stride
(Sz, S, S), and the input mirrored (``PAD_MODE``) by the halo (`Net.halo3`) around the volume, so the window of
voxel (z, y, x) is the mirrored wz x wy x wx window whose centre, at offset (w-1)//2 on each axis, is that voxel.
The layers run on (C, D, F, h, w) tensors (`network3`); the Sz*S*S fragments are stitched (`kernels.stitch3`) and
cropped to (Z, Y, X). `fragment`'s functions call these for a 3D net, so callers need not tell the two apart.
"""
from __future__ import annotations

import numpy as np

from ._reproducible import dot
from .arch import PAD_MODE, Net
from .errors import DataError
from .kernels import stitch3, unstitch3
from .loss import IGNORE, LossGrad, softmax, xent
from .network import Tape, backward, cast_params, forward


def as_czyx(net: Net, volume: np.ndarray) -> np.ndarray:
    volume = np.asarray(volume)
    if volume.ndim == 3:
        volume = volume[None]
    if volume.ndim != 4:
        raise DataError(f"a volume must be (Z, Y, X) or (C, Z, Y, X), got shape {volume.shape}")
    if volume.shape[0] != net.in_channels:
        raise DataError(f"the volume has {volume.shape[0]} channel(s), the net expects {net.in_channels}")
    if min(volume.shape[1:]) < 1:
        raise DataError(f"empty volume of shape {volume.shape}")
    return volume


def _stacked(x: np.ndarray) -> np.ndarray:
    """(C, Z, Y, X) -> the (C, D, F=1, h, w) input of `network3`, finite-checked."""
    if not np.isfinite(x).all():
        raise DataError("the volume contains NaN or infinite values")
    return np.ascontiguousarray(x[:, :, None])


def padded_input(net: Net, volume: np.ndarray, dtype=np.float32) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Mirror-pad a (C, Z, Y, X) volume for dense mode; returns (x (C, Z'+wz-1, 1, Y'+wy-1, X'+wx-1), (Z', Y', X'))."""
    volume = as_czyx(net, volume)
    size = volume.shape[1:]
    padded = tuple(-(-n // s) * s for n, s in zip(size, net.stride3))
    pad = [(0, 0)] + [(b, p - n + a) for n, p, (b, a) in zip(size, padded, net.halo3)]
    return _stacked(np.pad(np.asarray(volume, dtype=dtype), pad, mode=PAD_MODE)), padded


def _crop(dense: np.ndarray, size) -> np.ndarray:
    return dense[:, :size[0], :size[1], :size[2]]


def dense_logits(net: Net, params: dict, volume: np.ndarray, dtype=np.float32, tape: Tape | None = None):
    """Logits (K, Z, Y, X) of the patch network at every voxel of a (C, Z, Y, X) or (Z, Y, X) volume."""
    volume = as_czyx(net, volume)
    x, _ = padded_input(net, volume, dtype)
    frag = forward(net, cast_params(params, dtype), x, dense=True, tape=tape)
    return _crop(stitch3(frag, net.pools3), volume.shape[1:])


def dense_forward(net: Net, params: dict, volume: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Class probabilities (K, Z, Y, X): voxel (z, y, x) is the patch network's softmax on the window centred there."""
    return softmax(dense_logits(net, params, volume, dtype))


def dense_loss_grad(net: Net, params: dict, volume: np.ndarray, labels: np.ndarray, *, class_weights=None,
                    ignore_index: int = IGNORE, dtype=np.float32, grad: bool = True) -> LossGrad:
    """Per-voxel cross-entropy over one volume and (if ``grad``) its exact gradient: the sum over all windows of
    the patch network's gradients, in one forward/backward pass."""
    volume = as_czyx(net, volume)
    x, padded = padded_input(net, volume, dtype)
    return _loss_grad(net, params, x, volume.shape[1:], padded, labels, class_weights, ignore_index, dtype, grad)


def dense_loss_grad_padded(net: Net, params: dict, padded: np.ndarray, labels: np.ndarray, *, class_weights=None,
                           ignore_index: int = IGNORE, dtype=np.float32, grad: bool = True) -> LossGrad:
    """`dense_loss_grad` of an output block (d, h, w) = ``labels.shape`` whose input, with its halo, is ``padded``
    (as in `dense_logits_padded`): the unit of the distributed gradient on a large volume. The blocks of a volume
    partition its windows, so their results summed in a fixed order are the whole volume's loss and gradient."""
    x, size, grown = _padded_block(net, padded, dtype)
    return _loss_grad(net, params, x, size, grown, labels, class_weights, ignore_index, dtype, grad)


def _loss_grad(net, params, x, size, padded, labels, class_weights, ignore_index, dtype, grad) -> LossGrad:
    labels = np.asarray(labels)
    if labels.shape != tuple(size):
        raise DataError(f"labels of shape {labels.shape} do not match the volume {tuple(size)}")
    tape = Tape(dense=True) if grad else None
    p = cast_params(params, dtype)
    frag = forward(net, p, x, dense=True, tape=tape)
    K = net.n_classes
    logits = _crop(stitch3(frag, net.pools3), size)
    closs, ccount, cerr, dlog = xent(logits, labels, class_weights, ignore_index, grad=grad)
    w = np.ones(K) if class_weights is None else np.asarray(class_weights, dtype=np.float64)
    grads = None
    if grad:
        full = np.zeros((K, *padded), dtype=dtype)
        _crop(full, size)[...] = dlog
        grads = backward(net, p, tape, unstitch3(full, net.pools3))
    return LossGrad(dot(w, closs), closs, ccount, cerr, grads)


def _padded_block(net: Net, padded: np.ndarray, dtype):
    """A block's input with its halo -> (x for `network3`, the block's size, its size grown to the stride)."""
    padded = np.asarray(padded)
    if padded.ndim == 3:
        padded = padded[None]
    ctx = [w - 1 for w in net.window3]
    if padded.ndim != 4 or padded.shape[0] != net.in_channels:
        raise DataError(f"a padded block must be (C={net.in_channels}, d + {ctx[0]}, h + {ctx[1]}, w + {ctx[2]}), "
                        f"got shape {padded.shape}")
    size = tuple(n - c for n, c in zip(padded.shape[1:], ctx))
    if min(size) < 1:
        raise DataError(f"a padded block of shape {padded.shape} is smaller than the {'x'.join(map(str, net.window3))}"
                        f" window")
    grow = [-(-n // s) * s - n for n, s in zip(size, net.stride3)]
    x = np.asarray(padded, dtype=dtype)
    if any(grow):
        x = np.pad(x, [(0, 0)] + [(0, g) for g in grow], mode=PAD_MODE)
    return _stacked(x), size, tuple(n + g for n, g in zip(size, grow))


def dense_logits_padded(net: Net, params: dict, padded: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Logits (K, d, h, w) of a block whose context is already in ``padded`` (C, d+wz-1, h+wy-1, w+wx-1): the
    caller supplies `Net.halo3` around the block (read from a larger volume, mirrored only at its edge). Only the
    far side of each axis is padded here, up to a multiple of the stride; those voxels feed outputs that are
    cropped. Blockwise segmentation gets `dense_logits` of the whole volume this way, block by block."""
    x, size, _ = _padded_block(net, padded, dtype)
    frag = forward(net, cast_params(params, dtype), x, dense=True)
    return _crop(stitch3(frag, net.pools3), size)
