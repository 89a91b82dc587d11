"""Read predictions and ground truth for evaluation as lists of 2D slices (images may differ in size).

Predictions: a ``mpfpipe segment`` output (OME-Zarr; probabilities of every class, de-quantised, cropped to each
image's valid size), or a probability map of the positive class as a Zarr array, ``.npy`` or TIFF ((Z, Y, X) or
(Y, X); uint8 maps are read as value / 255), or numpy arrays ((K, Z, Y, X) class probabilities or (Z, Y, X)).

Truth: an mpfpipe dataset (class ids, ignore 255, with its splits and image sizes), or a label stack (Zarr / TIFF /
``.npy`` / numpy). A stack's values become class ids: with ``truth_positive=V`` pixels equal to V are the positive
class and all others the other class (ISBI 2012: V = 0, membranes are black); otherwise values that are all class
ids (or 255, the ignore label) are used as they are, and anything else is binarised as value > 127, as ingest
does: a mask of exactly the values 0 and 255 is binary (255 the positive class), not all-ignore foreground.
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


TAKES = ("a `mpfpipe segment` output, an mpfpipe dataset (truth), or one array: a Zarr array, a TIFF stack, "
         ".npy, an image file (PNG / JPEG / TIFF) or an HDF5 dataset FILE.h5:DATASET")


def _read_any(path: str, role: str = "image") -> np.ndarray:
    """One array from a file, read as segment and ingest read it: an HDF5 dataset ``FILE.h5:DATASET``, a TIFF stack,
    .npy, a single image file (by the rule of ``role``, `mpfpipe.data.imagefile`: a truth is a "mask") or a Zarr
    array; anything else (a folder-inference output, a plain folder) is refused saying what evaluate takes."""
    from ..data import hdf5
    spec = hdf5.parse_spec(path)
    if spec is not None:
        file, name = hdf5.resolve(path)
        return np.asarray(hdf5.open_dataset(file, name)[()])
    p = Path(path)
    if not p.exists():
        raise DataError(f"{path} not found")
    if p.suffix.lower() in (".tif", ".tiff"):
        from ..data.sources import read_tiff_stack
        return read_tiff_stack(p)
    if p.suffix.lower() == ".npy":
        from ..data.imagefile import read_npy
        return read_npy(p)
    if p.is_file() and p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"):
        from ..data.imagefile import read_image_file
        from ..data.sources import to_chw, to_label2d
        arr = read_image_file(p, role)
        return to_label2d(arr, str(p)) if role == "mask" else to_chw(arr, str(p))[0]
    from .._safety import recognise
    if recognise(p) == "folder-segmentation":
        raise DataError(f"{path} is a folder-inference output (masks/ + detections.csv, class ids of images of any "
                        f"size): evaluate takes {TAKES}; to score folder inference, ingest the images with their "
                        "masks and evaluate `mpfpipe segment` of that dataset")
    import zarr
    try:
        node = zarr.open(str(p), mode="r")
    except Exception:  # noqa: BLE001
        raise DataError(f"{path} is not something evaluate reads: it takes {TAKES}") from None
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


def damaged_instances(path) -> list[str]:
    """The missing or damaged chunks of a segmentation output's ``labels/instances`` (a lost chunk would read as
    no object, silently), by the format's own check, as `load_prediction` checks the probabilities."""
    from ..segment.verify import damaged_instance_blocks
    return [p for _, _, p in damaged_instance_blocks(path)]


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
            from ..segment.verify import damaged_level_blocks  # the format's own check (tests/test_layers.py)
            bad = [p for _, _, p in damaged_level_blocks(pred)]  # a lost chunk would read as 0, silently
            if bad:
                raise DataError(f"{pred}: {len(bad)} damaged block(s) (rerun the same segment command to recompute "
                                f"them); first: {bad[0]}")
            arr = zarr.open_group(str(pred), mode="r")["0"][...]
            arr = arr.astype(np.float32) * np.float32(meta.get("probability_scale", 1.0))
            if arr.ndim == 3:  # (K, Y, X) from a 2D input
                arr = arr[:, None]
            sizes = meta.get("input", {}).get("sizes")
            probs = [arr[:, z, :h, :w] for z, (h, w) in enumerate(sizes)] if sizes else list(np.moveaxis(arr, 1, 0))
            return Prediction(probs, arr.shape[0], meta)
        arr = _read_any(str(pred))
    arr = np.asarray(arr)
    if arr.dtype.kind not in "biuf":
        raise DataError(f"a prediction holds probabilities (numbers), got an array of {arr.dtype}")
    if arr.dtype == np.uint8:
        if arr.size and arr.max() == 1:  # 0 / 1: class ids (a mask), which / 255 would read as "all negative"
            raise DataError(f"prediction {pred if not isinstance(pred, np.ndarray) else 'array'} holds only the "
                            "values 0 and 1: class ids, not probabilities; evaluate takes probabilities (float in "
                            "[0, 1], or uint8 0..255 for 0..1), e.g. a `mpfpipe segment` output")
        arr = arr.astype(np.float32) / 255.0
    arr = arr.astype(np.float32, copy=False)
    if arr.ndim == 4:
        return Prediction(list(np.moveaxis(arr, 1, 0)), arr.shape[0])
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise DataError(f"a prediction must be (Z, Y, X) or (Y, X) probabilities, got shape {arr.shape}")
    if arr.size and not np.isfinite(arr).all():  # NaN passes every range comparison below
        raise DataError("prediction values hold NaN or infinite values; they must be probabilities in [0, 1]")
    if arr.size and (arr.min() < 0 or arr.max() > 1):
        raise DataError("prediction values must be probabilities in [0, 1] (or uint8 0..255)")
    return Prediction(list(arr), None)


def _to_class_ids(arr: np.ndarray, truth_positive, n_classes: int, positive: int) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype.kind == "f" and not (np.isfinite(arr).all() and (arr == np.round(arr)).all()):
        raise DataError("truth labels must be whole numbers (class ids or label values); got fractional or NaN "
                        "values (a probability map given as the truth?)")
    if arr.dtype.kind not in "biuf":
        raise DataError(f"truth labels must be integers, got {arr.dtype}")
    if truth_positive is not None:
        if not (arr == truth_positive).any():
            raise DataError(f"truth positive value {truth_positive}: no pixel of the truth has it (its values: "
                            f"{', '.join(map(str, np.unique(arr)[:10].tolist()))}); every metric would count no "
                            "positive pixel")
        other = 0 if positive != 0 else 1
        return np.where(arr == truth_positive, positive, other).astype(np.uint8)
    values = np.unique(arr)
    binary = set(values.tolist()) == {0, 255}  # a 0 / 255 mask: 255 is the positive class, as ingest reads it
    if not binary and np.all((values < n_classes) | (values == 255)) and np.all(values >= 0):
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
        truth = _read_any(str(truth), "mask")
    arr = np.asarray(truth)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise DataError(f"truth labels must be (Z, Y, X) or (Y, X), got shape {arr.shape}")
    return Truth(list(_to_class_ids(arr, truth_positive, n_classes, positive)))


def load_image(image):
    """The ``image`` option (raw pixels for the overlays): an image file or .npy read here by the one reader (as
    ingest and folder inference read it), a volume path (TIFF, Zarr, HDF5) left to `open_volume`, arrays as they
    are."""
    if image is None or isinstance(image, np.ndarray):
        return image
    p = Path(str(image))
    if p.is_file() and p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".npy"):
        return _read_any(str(p), "image")
    return image


def check_computable(truth: Truth, source, ignore_index: int, image=None, image_source=None) -> None:
    """Refuse, in one line, an evaluation whose metrics could not be computed and would read as numbers: a truth
    whose every pixel is the ignore label, or an ``image`` (for the overlays) of another shape than the truth."""
    name = source if isinstance(source, (str, Path)) else "array"
    if not sum(t.size for t in truth.labels):
        raise DataError(f"truth {name} holds no pixel (an empty array); no metric can be computed on it")
    if all((t == ignore_index).all() for t in truth.labels):
        raise DataError(f"truth {name}: every pixel is the ignore label {ignore_index}; no metric can be computed "
                        "on it")
    if image is None:
        return
    if isinstance(image, np.ndarray):
        arr = image[None] if image.ndim == 2 else image
        shapes = [tuple(a.shape[-2:]) for a in arr]
    else:
        from ..data.volume import open_volume
        vol = open_volume(image)
        shapes = [tuple(vol.slice_size(i)) for i in range(vol.shape[0])]
    want = [tuple(t.shape) for t in truth.labels]
    if shapes != want:
        bad = next((i for i, (a, b) in enumerate(zip(shapes, want)) if a != b), min(len(shapes), len(want)))
        got = f"{len(shapes)} slice(s)" if len(shapes) != len(want) else f"slice {bad} is {shapes[bad]}"
        shown = image_source if isinstance(image_source, (str, Path)) else \
            image if isinstance(image, (str, Path)) else "array"
        raise DataError(f"image {shown}: {got}, but the truth has "
                        f"{len(want)} slice(s)" + (f", slice {bad} {want[bad]}" if bad < len(want) else "")
                        + "; give the image that was segmented")


def overlay_image(pred: Prediction, truth: Truth, i: int, image=None):
    """Raw image slice i for overlays, or None: from ``image`` (array or path), the segmented input, or the
    truth dataset (of a dataset with section context: the section itself, not the one above it)."""
    from ..data.context import centre_channel
    try:
        if image is not None:
            if isinstance(image, np.ndarray):
                arr = image
            else:
                from ..data.volume import open_volume
                vol = open_volume(image)
                h, w = vol.slice_size(i)
                return vol.read(i, i + 1, (0, h), (0, w))[0, centre_channel(vol.info.get("dataset"))]
            return arr[i] if arr.ndim == 3 else arr
        src = pred.source.get("input") if pred.source else None
        if src and src.get("path"):
            from ..data.volume import open_volume
            vol = open_volume(src["path"] if not src.get("array") or src.get("kind") == "dataset"
                              else f"{src['path']}/{src['array']}")
            h, w = vol.slice_size(i)
            return vol.read(i, i + 1, (0, h), (0, w))[0, centre_channel(vol.info.get("dataset"))]
        if truth.dataset is not None:
            return truth.dataset.raw_image(i)[centre_channel(truth.dataset.attrs)]
    except Exception:  # noqa: BLE001 - overlays are a convenience; the metrics do not depend on them
        return None
    return None
