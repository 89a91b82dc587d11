"""The on-disk layout of an mpfpipe dataset (Zarr v3) and the checks that a store is one.

A dataset is one Zarr v3 group::

    DATASET.zarr/
      images   (N, C, Hmax, Wmax)  source dtype (uint8, uint16 or float32), chunks (1, C, Hmax, Wmax)
      labels   (N, Hmax, Wmax)     uint8 class ids 0..K-1, IGNORE_INDEX (255) = ignore; chunks (1, Hmax, Wmax)
      masks    (N, Hmax, Wmax)     optional, uint8, 1 = use the pixel, 0 = ignore it; chunks (1, Hmax, Wmax)

Images of different sizes are stored top-left aligned in arrays padded to the largest height and width; the
padding is 0 in ``images``/``masks`` and IGNORE_INDEX in ``labels``, and ``attrs["sizes"][i] = [h, w]`` is the
valid region of image i (``images[i, :, :h, :w]``). One image is one chunk, so a worker reads exactly its
images. Chunks are compressed with Blosc/zstd.

Group attributes (JSON):

- ``mpfpipe_dataset``: ``{"version": 1, "complete": bool}``; ``complete`` is set true as the very last write,
  and the finished group is renamed into place from a temporary directory beside the output, so a store that
  is missing, half written or interrupted never opens as a dataset.
- ``class_names``: list of K names; class id k is ``class_names[k]``.
- ``ignore_index``: 255.
- ``label_mapping``: how source label values became class ids, e.g. ``{"mode": "threshold", "threshold": 127}``,
  ``{"mode": "positive", "value": 0}``, ``{"mode": "identity"}`` or ``{"mode": "map", "map": {"0": 1, ...}}``.
- ``sizes``: ``[[h, w], ...]`` valid size of each image (after down-sampling);
  ``original_sizes``: the size in the source; ``downsample``: the integer factor.
- ``normalisation``: ``{"mean": [per channel], "std": [per channel]}`` over the valid pixels of the train split,
  in the units of the stored images.
- ``splits``: ``{"train": [...], "val": [...], "test": [...]}`` image indices (all in train when no split asked).
- ``names``: source file name / id of each image; ``groups``: source folder / stack of each image.
- ``positive`` (alias ``has_defect``): per image, true when it holds a pixel of a non-background class (id >= 1).
- ``class_counts``: per image, the count of non-ignored pixels of each class (masks folded in).
- ``provenance``: ``{"sources": [...], "options": {...}, "mpfpipe_version": ..., "created": ISO date, ...}``.
- ``checksums``: ``{"algorithm": ..., "images": [...], "labels": [...], "masks": [...]}``, the CRC-32 of each
  chunk's decoded bytes (one per image and array), checked by every read (`mpfpipe._integrity`); datasets from
  before it are read unchecked.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError

FORMAT_KEY = "mpfpipe_dataset"
FORMAT_VERSION = 1
IGNORE_INDEX = 255
IMAGE_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
SPLIT_NAMES = ("train", "val", "test")
REQUIRED_ATTRS = ("class_names", "ignore_index", "label_mapping", "sizes", "normalisation", "splits", "names")


def compressors():
    """Blosc/zstd with bit-shuffle: the codec of every array."""
    from zarr.codecs import BloscCodec, BloscShuffle
    return [BloscCodec(cname="zstd", clevel=5, shuffle=BloscShuffle.bitshuffle)]


def check_image_dtype(dtype, what: str) -> np.dtype:
    """The dtype an image is stored in; float64 is narrowed to float32, anything else unsupported is an error."""
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        return np.dtype(np.float32)
    if dtype not in IMAGE_DTYPES:
        raise DataError(f"{what}: unsupported image dtype {dtype} (supported: uint8, uint16, float32, float64)")
    return dtype


def open_group(path):
    """Open a complete dataset's Zarr group read-only, or raise DataError saying why it is not one."""
    import zarr
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such dataset")
    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception as exc:  # noqa: BLE001 - any failure to open means "not a dataset"
        raise DataError(f"{path} is not a Zarr v3 group ({type(exc).__name__}: {exc})") from None
    attrs = group.attrs.asdict()
    meta = attrs.get(FORMAT_KEY)
    if not isinstance(meta, dict):
        raise DataError(f"{path} is not an mpfpipe dataset (no '{FORMAT_KEY}' attribute); create one with "
                        "'mpfpipe ingest'")
    if meta.get("version") != FORMAT_VERSION:
        raise DataError(f"{path}: dataset format version {meta.get('version')!r} is not supported "
                        f"(this mpfpipe reads version {FORMAT_VERSION})")
    if meta.get("complete") is not True:
        raise DataError(f"{path} is an incomplete dataset (an ingest was interrupted or failed); "
                        "re-run the ingest with --overwrite")
    missing = [k for k in REQUIRED_ATTRS if k not in attrs]
    if missing:
        raise DataError(f"{path}: dataset attributes missing: {', '.join(missing)}")
    for name in ("images", "labels"):
        if name not in group:
            raise DataError(f"{path}: dataset has no '{name}' array")
    n, _, hmax, wmax = group["images"].shape
    if group["labels"].shape != (n, hmax, wmax):
        raise DataError(f"{path}: labels shape {group['labels'].shape} does not match images "
                        f"{group['images'].shape}")
    if "masks" in group and group["masks"].shape != (n, hmax, wmax):
        raise DataError(f"{path}: masks shape {group['masks'].shape} does not match images")
    if len(attrs["sizes"]) != n:
        raise DataError(f"{path}: {len(attrs['sizes'])} sizes for {n} images")
    return group, attrs
