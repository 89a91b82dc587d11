"""The one reader of single image files (PNG, JPEG, TIFF, BMP): ingest, folder inference, export's ``--sample`` and
evaluate all decode a file through `read_image_file`, so a file means the same pixels in every command.

One rule per role, applied as an image viewer shows the file:

- ``role="image"`` (the picture a model looks at): a palette (P / PA) image is its colours, not its palette
  indices (converted to RGB, then reduced to grey when the colours are grey); a bilevel (mode 1) image is 0 / 255;
  CMYK, YCbCr, LAB, HSV become RGB; 32-bit integer (mode I) pixels that fit 16 bits are uint16, as the same
  picture saved as a 16-bit TIFF reads.
- ``role="mask"`` (class ids or label values): a palette image is its palette *indices* (label tools save
  class ids that way, with a palette only to show them); a bilevel image is 0 / 1.

Both roles: the EXIF orientation is applied (a JPEG from a camera is turned the way it is shown), and `image_size`
reports the size after it. Grey+alpha and RGBA lose their alpha channel, RGB whose channels are equal becomes
one channel (`sources.to_chw`, `sources.to_label2d`). TIFFs are read with tifffile (every bit depth; their
Orientation tag is not applied, as most scientific viewers do not either).

`check_for_model` is the one check that a decoded image is something a model can take (channels, pixel type,
finite values): folder inference and export's sample apply it alike, as segment does for volumes.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from ..errors import DataError

ROLES = ("image", "mask")
_TO_RGB = ("CMYK", "YCbCr", "LAB", "HSV")
_SWAPS = (5, 6, 7, 8)  # EXIF orientations that turn the picture by 90 degrees


def _decode_pil(im, role: str) -> np.ndarray:
    from PIL import ImageOps
    im = ImageOps.exif_transpose(im) or im
    mode = im.mode
    if mode in ("P", "PA"):
        if role == "mask":
            return np.asarray(im.convert("P") if mode == "PA" else im)  # the indices
        im = im.convert("RGB")
    elif mode == "1":
        return np.asarray(im, dtype=np.uint8) * np.uint8(255 if role == "image" else 1)
    elif mode in _TO_RGB:
        im = im.convert("RGB")
    arr = np.asarray(im)
    if mode == "I" and arr.size and arr.min() >= 0 and arr.max() <= 65535:
        arr = arr.astype(np.uint16)
    return arr


def read_image_file(path, role: str = "image") -> np.ndarray:
    """The pixels of one image file as numpy ((H, W) or (H, W, C)), by the rule of ``role`` (see the module
    doc). Any decoding problem is one DataError naming the file."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tiff_damage_check(path):  # tifffile logs a cut page chain and reads on
                return tifffile.imread(path)
        from PIL import Image
        with Image.open(path) as im:
            im.load()
            return _decode_pil(im, role)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - PIL/tifffile raise many kinds
        raise DataError(f"{path}: cannot read image file ({type(exc).__name__}: {exc})") from None


def read_npy(path, what: str = "") -> np.ndarray:
    """A .npy array (never pickled objects), any reading problem one DataError naming the file."""
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - truncated, object arrays, not .npy: all the user's file
        raise DataError(f"{what}{path}: cannot read .npy ({type(exc).__name__}: {exc})") from None
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{what}{path}: an array of {arr.dtype}; images, labels and probabilities are numbers")
    return arr


def image_size(path) -> tuple[int, int]:
    """(H, W) of an image file as `read_image_file` returns it (EXIF orientation applied), from the header."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile
            with tifffile.TiffFile(path) as tif:
                shape = tif.pages[0].shape
            return int(shape[0]), int(shape[1])
        from PIL import Image
        with Image.open(path) as im:
            w, h = im.size
            turned = im.getexif().get(0x0112) in _SWAPS
        return (int(w), int(h)) if turned else (int(h), int(w))
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{path}: cannot read image file ({type(exc).__name__}: {exc})") from None


def check_for_model(img: np.ndarray, channels: int, dtype, what) -> np.ndarray:
    """``img`` ((C, H, W)) if a model of ``channels`` input channels trained on ``dtype`` pixels (None: any) can
    take it; else one DataError naming ``what``."""
    if img.shape[0] != channels:
        if channels == 1 and img.shape[0] == 3:
            raise DataError(f"{what}: an RGB image with unequal channels; the model takes grey images (or RGB "
                            "with equal channels)")
        raise DataError(f"{what}: {img.shape[0]} channel(s), the model takes {channels}")
    if dtype and np.dtype(img.dtype) != np.dtype(dtype):
        raise DataError(f"{what}: pixels of type {img.dtype}, but the model was trained on {np.dtype(dtype)} "
                        f"images (the normalisation is in their units)")
    if img.dtype.kind not in "uif":
        raise DataError(f"{what}: cannot segment pixels of type {img.dtype}")
    if img.dtype.kind == "f" and not np.isfinite(img).all():
        raise DataError(f"{what}: the image holds NaN or infinite values")
    return img


@contextlib.contextmanager
def tiff_damage_check(path):
    """Raise DataError naming ``path`` if tifffile logs a problem while the block runs: it logs a cut page chain
    ("invalid page offset") and then reads on with fewer pages, which would silently drop slices."""
    import logging

    class _Warnings(logging.Handler):
        def __init__(self):
            super().__init__(logging.WARNING)
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    log, seen = logging.getLogger("tifffile"), _Warnings()
    log.addHandler(seen)
    propagate, log.propagate = log.propagate, False
    try:
        yield seen
        if seen.messages:
            raise DataError(f"{path}: damaged TIFF (truncated?): {seen.messages[0]}")
    finally:
        log.removeHandler(seen)
        log.propagate = propagate
