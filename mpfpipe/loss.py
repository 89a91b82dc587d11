"""Per-pixel softmax cross-entropy with class balancing and an ignore label.

The loss of a set of pixels is ``sum_c w_c * L_c`` where ``L_c`` is the summed ``-log p(c)`` over the pixels
labelled ``c`` (pixels labelled ``ignore_index`` count nowhere). Balancing is a choice of weights: with global
pixel counts ``N_c`` over a whole batch of images, ``w_c = 1 / (K' N_c)`` (K' = classes present) makes every class
contribute its mean loss equally. Because the weights must come from the *batch*, not one image, per-image results
carry the unweighted per-class sums and counts; a reducer adds them over images and the driver picks the weights
(`balanced_weights`) before the gradient pass.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import DataError
from .kernels import xent_pass

IGNORE = 255


@dataclass
class LossGrad:
    """Result of a loss pass over one image (or a batch of patches); everything a batch reducer needs.

    loss: sum_c w_c * class_loss[c] (float); class_loss (K,) float64: unweighted per-class sums of -log p;
    class_count (K,) int64: non-ignored pixels per class; class_errors (K,) int64: of those, misclassified;
    grad: float64 gradient of ``loss`` per tensor, or None when no gradient was asked."""
    loss: float
    class_loss: np.ndarray
    class_count: np.ndarray
    class_errors: np.ndarray
    grad: dict | None


def balanced_weights(class_count: np.ndarray) -> np.ndarray:
    """w_c = 1 / (K' N_c) for the K' classes present (0 for absent ones): every class weighs equally and the
    weights sum over pixels to 1, i.e. the loss is the mean over classes of each class's mean pixel loss."""
    count = np.asarray(class_count, dtype=np.float64)
    present = count > 0
    w = np.zeros_like(count)
    w[present] = 1.0 / (present.sum() * count[present])
    return w


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over axis 0 (classes), numerically stable."""
    z = logits - logits.max(axis=0, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=0, keepdims=True)


def xent(logits: np.ndarray, labels: np.ndarray, class_weights=None, ignore_index: int = IGNORE, grad: bool = True):
    """Cross-entropy of logits (K, ...) against integer labels (...).

    Returns (class_loss (K,) float64, class_count (K,) int64, class_errors (K,) int64, dlogits or None) where
    dlogits is the gradient of ``sum_c w_c class_loss[c]`` in the logits' dtype and class_errors counts the
    pixels of each class whose arg-max prediction is another class."""
    K = logits.shape[0]
    if labels.shape != logits.shape[1:]:
        raise DataError(f"labels of shape {labels.shape} do not match the output {logits.shape[1:]}")
    z = np.ascontiguousarray(logits.reshape(K, -1))
    lab = np.ascontiguousarray(np.asarray(labels).reshape(-1))
    if lab.dtype.kind not in "iu":
        lab = lab.astype(np.int64)
    w = np.ones(K) if class_weights is None else np.asarray(class_weights, dtype=np.float64)
    if w.shape != (K,):
        raise ValueError(f"class_weights must have {K} values")
    if not (np.isfinite(w).all() and (w >= 0).all()):
        raise ValueError(f"class_weights {w.tolist()} must be finite and >= 0")
    class_loss = np.zeros(K)
    class_count = np.zeros(K, dtype=np.int64)
    class_errors = np.zeros(K, dtype=np.int64)
    d = np.empty_like(z) if grad else np.empty((1, 1), dtype=z.dtype)
    bad = xent_pass(z, lab, ignore_index, w, grad, class_loss, class_count, class_errors, d)
    if bad >= 0:
        raise DataError(f"label value {int(lab[bad])} is not a class of this {K}-class net "
                        f"(classes 0..{K - 1}, ignore {ignore_index})")
    return class_loss, class_count, class_errors, d.reshape(logits.shape) if grad else None
