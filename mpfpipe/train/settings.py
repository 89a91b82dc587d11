"""Settings of a training run, shared by the driver and the benchmarks: the class weights of the loss
(`class_weights`, `per_pixel`) and whether the workers hold the images or stream them from Zarr (`should_stream`).
The training-time budget is parsed by `mpfpipe.values.parse_duration`."""
from __future__ import annotations

import numpy as np

from ..loss import balanced_weights
from ..values import parse_duration  # noqa: F401 - its old import path


def class_weights(counts, balance: bool) -> np.ndarray:
    """Balanced: w_c = 1/(K' N_c) (every class its mean loss); otherwise 1/N for all classes, i.e. the mean loss
    per labelled pixel. Either way the loss is a mean, so step sizes do not depend on the dataset size."""
    counts = np.asarray(counts, np.int64)
    if balance:
        return balanced_weights(counts)
    total = counts.sum()
    return np.full(counts.shape, 1.0 / total if total else 0.0)


def per_pixel(e):
    """The plain mean loss from an evaluation summed with unit weights: its loss and gradient divided by the
    labelled pixels its own tasks counted (the same as weights 1/N, without asking for N first)."""
    n = int(e.class_count.sum())
    e.loss = e.loss / n if n else 0.0
    if e.grad is not None:
        e.grad = e.grad / n if n else np.zeros_like(e.grad)
    return e


STREAM_FRACTION = 0.25


def should_stream(dataset, indices, memory: int, fraction: float = STREAM_FRACTION) -> bool:
    """Stream from Zarr when holding the images would take more than ``fraction`` of the workers' total memory
    (the rest is left for activations: a gradient pass needs several times its image in float32 per layer)."""
    return bool(memory) and data_bytes(dataset, indices) > fraction * memory


def data_bytes(dataset, indices) -> int:
    """Bytes the held (normalised float32 + uint8 labels) images of ``indices`` take on the workers."""
    c = dataset.channels
    return int(sum(dataset.sizes[i][0] * dataset.sizes[i][1] * (4 * c + 1) for i in indices))
