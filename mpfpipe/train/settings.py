"""Settings of a training run, shared by the driver and the benchmarks: the class weights of the loss
(`class_weights`, `per_pixel`) and whether the workers hold the images or stream them from Zarr (`should_stream`).
The training-time budget is parsed by `mpfpipe.values.parse_duration`."""
from __future__ import annotations

import numpy as np

from ..errors import TrainingError
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


FINGERPRINTED = ("class_names", "ignore_index", "label_mapping", "sizes", "downsample", "normalisation", "splits",
                 "class_counts", "checksums")  # what a model depends on; not provenance's times and paths


def dataset_fingerprint(ds) -> str:
    """SHA-256 of what training depends on in a dataset: its pixels (the per-chunk checksums recorded at ingest),
    labels' class counts, sizes, splits and normalisation. A dataset re-ingested at the same path from other
    images gets another fingerprint, so a resume cannot mix the old weights with new data."""
    import hashlib
    import json
    attrs = dict(ds.attrs)
    doc = {k: attrs.get(k) for k in FINGERPRINTED}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def check_resume(old: dict, new: dict, checkpoint, free=()) -> None:
    """Refuse, in one line, a resume of ``checkpoint`` (its run's config ``old``) with the config ``new``: when the
    dataset changed since that run started (its fingerprint), or an option other than ``free`` differs."""
    was, now = old.get("inputs"), new.get("inputs")
    if was is not None and was != now:
        raise TrainingError(f"cannot resume {checkpoint}: the dataset {new.get('dataset')} changed since that run "
                            f"started (fingerprint {str(was.get('dataset'))[:12]} -> {str(now.get('dataset'))[:12]}: "
                            "re-ingested?); its weights belong to the old data: pass --overwrite to start again")
    diff = [k for k in new if k not in (*free, "inputs") and old.get(k) != new[k]]
    if diff:
        raise TrainingError(f"cannot resume {checkpoint}: the run used different {', '.join(diff)}")


def check_labelled(ds, splits: dict) -> None:
    """Every split a run computes a loss on ({name: indices}) must hold a labelled pixel: an all-ignore split has no
    loss, and a 0.0 would make the first step's model the best one (validation) or train on nothing."""
    for split, indices in splits.items():
        if indices and not np.asarray(ds.class_counts(list(indices))).sum():
            role = "training" if split == next(iter(splits)) else "validation"
            option = "--train-split" if role == "training" else "--val-split ('' for none)"
            raise TrainingError(f"{role} split {split!r} of {ds.path} holds no labelled pixel (all are the ignore "
                                f"label): its loss cannot be computed; choose another {option}")


def build_net(spec, ds, maps, hidden):
    """The net to train: a preset (resized by ``maps`` / ``hidden``) or a network file, for ``ds``'s channels and
    classes."""
    from ..arch import PRESETS, load_net, preset
    if isinstance(spec, str) and spec in PRESETS and (maps or hidden):
        return preset(spec, maps=maps, hidden=hidden, in_channels=ds.channels, n_classes=ds.n_classes)
    if maps or hidden:
        raise TrainingError("--maps/--hidden only apply to preset nets (n4, n3, steel)")
    return load_net(spec, in_channels=ds.channels, n_classes=ds.n_classes)


def augment_spec(augment, net):
    """The AugmentSpec of ``augment`` (None when nothing is on); a crop gets the margin that keeps it exact."""
    import dataclasses

    from ..data import AugmentSpec
    if augment is None or augment is False:
        return None
    spec = AugmentSpec.from_dict(augment) if isinstance(augment, dict) else augment
    if spec.crop > 0 and net.ndim == 2 and spec.margin < net.window // 2:  # 3D units keep their own margin
        spec = dataclasses.replace(spec, margin=net.window // 2)
    return spec if spec.active else None
