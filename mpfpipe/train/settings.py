"""Settings of a training run, shared by the driver, the options table and the benchmarks: the training-time
budget (`parse_duration`), the class weights of the loss (`class_weights`) and whether the workers hold the
images or stream them from Zarr (`should_stream`)."""
from __future__ import annotations

import numpy as np

from ..errors import TrainingError
from ..loss import balanced_weights


def parse_duration(value) -> float | None:
    """Seconds from a number or a string with a unit: "7200", "7200s", "90m", "2h", "1.5h"; None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        scale = {"s": 1.0, "m": 60.0, "h": 3600.0}.get(text[-1:], None)
        try:
            seconds = float(text[:-1] if scale else text) * (scale or 1.0)
        except ValueError:
            raise TrainingError(f"max_time: {value!r} is not a duration (e.g. 7200, 90m, 2h)") from None
    if not seconds > 0:
        raise TrainingError(f"max_time: {value!r} must be positive")
    return seconds


def class_weights(counts, balance: bool) -> np.ndarray:
    """Balanced: w_c = 1/(K' N_c) (every class its mean loss); otherwise 1/N for all classes, i.e. the mean loss
    per labelled pixel. Either way the loss is a mean, so step sizes do not depend on the dataset size."""
    counts = np.asarray(counts, np.int64)
    if balance:
        return balanced_weights(counts)
    total = counts.sum()
    return np.full(counts.shape, 1.0 / total if total else 0.0)


STREAM_FRACTION = 0.25


def should_stream(dataset, indices, memory: int, fraction: float = STREAM_FRACTION) -> bool:
    """Stream from Zarr when holding the images would take more than ``fraction`` of the workers' total memory
    (the rest is left for activations: a gradient pass needs several times its image in float32 per layer)."""
    return bool(memory) and data_bytes(dataset, indices) > fraction * memory


def data_bytes(dataset, indices) -> int:
    """Bytes the held (normalised float32 + uint8 labels) images of ``indices`` take on the workers."""
    c = dataset.channels
    return int(sum(dataset.sizes[i][0] * dataset.sizes[i][1] * (4 * c + 1) for i in indices))
