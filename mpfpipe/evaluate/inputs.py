"""Read predictions and ground truth for evaluation as lists of 2D slices (images may differ in size).

Predictions: a ``mpfpipe segment`` output (OME-Zarr; probabilities of every class, de-quantised, cropped to each
image's valid size), or a probability map of the positive class as a Zarr array, ``.npy`` or TIFF ((Z, Y, X) or
(Y, X); uint8 maps are read as value / 255), or numpy arrays ((K, Z, Y, X) class probabilities or (Z, Y, X)).

Truth: an mpfpipe dataset (class ids, ignore 255, with its splits and image sizes), or a label stack (Zarr / TIFF /
``.npy`` / numpy). A stack's values become class ids: with ``truth_positive=V`` pixels equal to V are the positive
class and all others the other class (ISBI 2012: V = 0, membranes are black); otherwise values that are all class
ids (or 255) are used as they are, and anything else is binarised as value > 127.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError


@dataclass
class Prediction:
    probs: list          # per slice: (K, h, w) float32, or (h, w) positive-class probability when K is unknown
    n_classes: int | None
    source: dict = field(default_factory=dict)  # segment attrs["mpfpipe"] when read from a segment output

    def positive(self, i: int, positive: int) -> np.ndarray:
        p = self.probs[i]
        return p[positive] if p.ndim == 3 else p


@dataclass
class Truth:
    labels: list                     # per slice (h, w) uint8 class ids, 255 = ignore
    splits: dict | None = None
    dataset: object = None           # the Dataset when read from one (for overlay images)


def _read_any(path: str) -> np.ndarray:
    p = Path(path)
    if not p.exists():
        raise DataError(f"{path} not found")
    if p.suffix.lower() in (".tif", ".tiff"):
        from ..data.sources import read_tiff_stack
        return read_tiff_stack(p)
    if p.suffix.lower() == ".npy":
        return np.load(str(p), allow_pickle=False)
    import zarr
    try:
        node = zarr.open(str(p), mode="r")
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{path} is not a TIFF, .npy or Zarr array: {exc}") from None
    if not isinstance(node, zarr.Array):
        raise DataError(f"{path} is a Zarr group; give the array inside it (e.g. {path}/NAME)")
    return node[...]


def _segment_meta(path) -> dict | None:
    import zarr
    try:
        meta = dict(zarr.open_group(str(path), mode="r").attrs).get("mpfpipe")
    except Exception:  # noqa: BLE001 - not a group
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == "mpfpipe-segmentation" else None


def load_prediction(pred) -> Prediction:
    if isinstance(pred, Prediction):
        return pred
    if isinstance(pred, np.ndarray):
        arr = pred
        meta = None
    else:
        meta = _segment_meta(pred)
        if meta is not None:
            import zarr
            if not meta.get("complete"):
                raise DataError(f"{pred} is an unfinished segmentation; rerun `mpfpipe segment` to complete it")
            arr = zarr.open_group(str(pred), mode="r")["0"][...]
            arr = arr.astype(np.float32) * np.float32(meta.get("probability_scale", 1.0))
            if arr.ndim == 3:  # (K, Y, X) from a 2D input
                arr = arr[:, None]
            sizes = meta.get("input", {}).get("sizes")
            probs = [arr[:, z, :h, :w] for z, (h, w) in enumerate(sizes)] if sizes else list(np.moveaxis(arr, 1, 0))
            return Prediction(probs, arr.shape[0], meta)
        arr = _read_any(str(pred))
    arr = np.asarray(arr)
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    arr = arr.astype(np.float32, copy=False)
    if arr.ndim == 4:
        return Prediction(list(np.moveaxis(arr, 1, 0)), arr.shape[0])
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise DataError(f"a prediction must be (Z, Y, X) or (Y, X) probabilities, got shape {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() > 1):
        raise DataError("prediction values must be probabilities in [0, 1] (or uint8 0..255)")
    return Prediction(list(arr), None)


def _to_class_ids(arr: np.ndarray, truth_positive, n_classes: int, positive: int) -> np.ndarray:
    arr = np.asarray(arr)
    if truth_positive is not None:
        other = 0 if positive != 0 else 1
        return np.where(arr == truth_positive, positive, other).astype(np.uint8)
    values = np.unique(arr)
    if np.all((values < n_classes) | (values == 255)) and np.all(values >= 0):
        return arr.astype(np.uint8)
    return (arr > 127).astype(np.uint8)


def load_truth(truth, *, truth_positive=None, n_classes: int = 2, positive: int = 1) -> Truth:
    if isinstance(truth, Truth):
        return truth
    if not isinstance(truth, np.ndarray):
        p = Path(str(truth))
        if p.is_dir() and (p / "zarr.json").exists():
            import zarr
            attrs = dict(zarr.open_group(str(p), mode="r").attrs)
            if "mpfpipe_dataset" in attrs:
                if truth_positive is not None:  # a dataset's labels are class ids already: it would be ignored
                    raise DataError(f"truth positive value {truth_positive}: {p} is a dataset, whose labels are "
                                    "class ids already; it applies to a label stack only")
                from ..data import open_dataset
                ds = open_dataset(p)
                labels = [ds.raw_labels(i) for i in range(len(ds))]
                return Truth(labels, {k: list(v) for k, v in (ds.attrs.get("splits") or {}).items()}, ds)
        truth = _read_any(str(truth))
    arr = np.asarray(truth)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise DataError(f"truth labels must be (Z, Y, X) or (Y, X), got shape {arr.shape}")
    return Truth(list(_to_class_ids(arr, truth_positive, n_classes, positive)))


def overlay_image(pred: Prediction, truth: Truth, i: int, image=None):
    """Raw image slice i for overlays, or None: from ``image`` (array or path), the segmented input, or the
    truth dataset."""
    try:
        if image is not None:
            if isinstance(image, np.ndarray):
                arr = image
            else:
                from ..data.volume import open_volume
                vol = open_volume(image)
                h, w = vol.slice_size(i)
                return vol.read(i, i + 1, (0, h), (0, w))[0, 0]
            return arr[i] if arr.ndim == 3 else arr
        src = pred.source.get("input") if pred.source else None
        if src and src.get("path"):
            from ..data.volume import open_volume
            vol = open_volume(src["path"] if not src.get("array") or src.get("kind") == "dataset"
                              else f"{src['path']}/{src['array']}")
            h, w = vol.slice_size(i)
            return vol.read(i, i + 1, (0, h), (0, w))[0, 0]
        if truth.dataset is not None:
            return truth.dataset.raw_image(i)[0]
    except Exception:  # noqa: BLE001 - overlays are a convenience; the metrics do not depend on them
        return None
    return None
