"""Patch mode on the same fast kernels: the network applied to batches of w x w windows.

A batch of B windows is a stack of B fragments (C, B, w, w) run with plain (single-offset) pooling, so patch mode
and fragment mode share every kernel and the speed-up we report is against an equal implementation, as in the
paper. `image_patch_loss_grad` is the patch-by-patch equivalent of `fragment.dense_loss_grad`: it visits every
pixel's window, batch by batch. A 3D net takes (B, C, wz, wy, wx) windows, stacked as (C, wz, B, wy, wx) for
`network3`.
"""
from __future__ import annotations

import numpy as np

from ._reproducible import dot
from .arch import Net
from .errors import DataError
from .fragment import PAD_MODE, LossGrad, as_chw
from .loss import IGNORE, softmax, xent
from .network import Tape, backward, cast_params, forward


def mirrored(net: Net, image: np.ndarray) -> np.ndarray:
    """The image padded by the window halo on every side, mirrored as in fragment mode (2D nets: a 3D net's windows
    are cut by the caller, e.g. tests/naive.py)."""
    if net.ndim == 3:
        raise DataError(f"{net.name} is a 3D net: windows of images are cut for 2D nets only")
    image = as_chw(net, image)
    before, after = net.halo
    return np.pad(image, ((0, 0), (before, after), (before, after)), mode=PAD_MODE)


def extract_windows(net: Net, image: np.ndarray, centres: np.ndarray, padded: np.ndarray | None = None,
                    dtype=np.float32) -> np.ndarray:
    """Windows (B, C, w, w) centred on ``centres`` (B, 2) = (y, x) image coordinates."""
    padded = mirrored(net, image) if padded is None else padded
    w = net.window
    centres = np.asarray(centres, dtype=np.intp).reshape(-1, 2)
    out = np.empty((len(centres), padded.shape[0], w, w), dtype=dtype)
    for b, (y, x) in enumerate(centres):
        out[b] = padded[:, y:y + w, x:x + w]
    return out


def _stack(net: Net, windows: np.ndarray, dtype) -> np.ndarray:
    windows = np.asarray(windows)
    if net.ndim == 3:
        shape = (net.in_channels, *net.window3)
        if windows.ndim != 5 or windows.shape[1:] != shape:
            raise DataError(f"windows must be (B, {', '.join(map(str, shape))}), got {windows.shape}")
        return np.ascontiguousarray(windows.transpose(1, 2, 0, 3, 4), dtype=dtype)
    w = net.window
    if windows.ndim != 4 or windows.shape[1:] != (net.in_channels, w, w):
        raise DataError(f"windows must be (B, {net.in_channels}, {w}, {w}), got {windows.shape}")
    return np.ascontiguousarray(windows.transpose(1, 0, 2, 3), dtype=dtype)


def patch_logits(net: Net, params: dict, windows: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Logits (B, K) of a batch of windows."""
    out = forward(net, cast_params(params, dtype), _stack(net, windows, dtype), dense=False)
    return out.reshape(out.shape[0], -1).T  # (K, B, 1, 1), or (K, 1, B, 1, 1) for a 3D net


def patch_forward(net: Net, params: dict, windows: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Class probabilities (B, K) of a batch of windows."""
    return softmax(patch_logits(net, params, windows, dtype).T).T


def patch_loss_grad(net: Net, params: dict, windows: np.ndarray, labels: np.ndarray, *, class_weights=None,
                    ignore_index: int = IGNORE, dtype=np.float32, grad: bool = True) -> LossGrad:
    """Summed cross-entropy of a batch of windows against their centre labels (B,), and its gradient."""
    p = cast_params(params, dtype)
    tape = Tape(dense=False) if grad else None
    logits = forward(net, p, _stack(net, windows, dtype), dense=False, tape=tape)
    closs, ccount, cerr, dlog = xent(logits.reshape(logits.shape[0], -1), np.asarray(labels).reshape(-1),
                                     class_weights, ignore_index, grad=grad)
    w = np.ones(net.n_classes) if class_weights is None else np.asarray(class_weights, dtype=np.float64)
    grads = backward(net, p, tape, np.ascontiguousarray(dlog).reshape(logits.shape)) if grad else None
    return LossGrad(dot(w, closs), closs, ccount, cerr, grads)


def image_patch_loss_grad(net: Net, params: dict, image: np.ndarray, labels: np.ndarray, *, batch: int = 256,
                          class_weights=None, ignore_index: int = IGNORE, dtype=np.float32,
                          pixels: np.ndarray | None = None) -> LossGrad:
    """Patch-by-patch loss and gradient over every labelled pixel of an image (or the given ``pixels`` (N, 2)),
    ``batch`` windows at a time: what fragment mode computes in one pass."""
    image = as_chw(net, image)
    labels = np.asarray(labels)
    if pixels is None:
        ys, xs = np.nonzero(labels != ignore_index)
        pixels = np.stack([ys, xs], axis=1)
    padded = mirrored(net, image)
    K = net.n_classes
    total = LossGrad(0.0, np.zeros(K), np.zeros(K, np.int64), np.zeros(K, np.int64), None)
    for start in range(0, len(pixels), batch):
        chunk = pixels[start:start + batch]
        windows = extract_windows(net, image, chunk, padded, dtype)
        part = patch_loss_grad(net, params, windows, labels[chunk[:, 0], chunk[:, 1]], class_weights=class_weights,
                               ignore_index=ignore_index, dtype=dtype)
        total.loss += part.loss
        total.class_loss += part.class_loss
        total.class_count += part.class_count
        total.class_errors += part.class_errors
        if total.grad is None:
            total.grad = part.grad
        else:
            for name, g in part.grad.items():
                total.grad[name] += g
    return total
