"""Image files for folder inference: finding them, naming their masks, decoding them, writing masks atomically.

See `mpfpipe.segment.folder` for the layout of the output folder.
"""
from __future__ import annotations

import fnmatch
import io
import os
from pathlib import Path

import numpy as np

from .. import __version__

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


def is_image_folder(path) -> bool:
    """A folder that is not a Zarr store (those are volumes): segmented as a folder of image files."""
    p = Path(path)
    return p.is_dir() and not any((p / n).exists() for n in ("zarr.json", ".zgroup", ".zarray"))


def source_stamp(path: Path) -> dict:
    st = path.stat()
    return {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def find_images(folder: Path, include=(), exclude=(), skip: Path | None = None) -> list[str]:
    """Relative POSIX paths of the image files under ``folder`` (sorted; hidden files and folders and ``skip``
    left out), kept when they match one of the ``include`` globs (default: all) and none of ``exclude``."""
    out = []
    skip = skip.resolve() if skip is not None else None
    for dirpath, dirnames, files in os.walk(folder):
        d = Path(dirpath)
        dirnames[:] = sorted(n for n in dirnames if not n.startswith(".")
                             and (skip is None or (d / n).resolve() != skip))
        for name in sorted(files):
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            rel = (d / name).relative_to(folder).as_posix()
            if include and not any(fnmatch.fnmatchcase(rel, g) for g in include):
                continue
            if any(fnmatch.fnmatchcase(rel, g) for g in exclude):
                continue
            out.append(rel)
    return sorted(out)


def mask_names(rels: list[str]) -> dict[str, str]:
    """Image path -> mask path (relative to OUTDIR/masks): ``dir/stem.png``, or ``dir/name.png`` for images
    of one folder that share a stem (``a.jpg`` and ``a.tif``)."""
    first = {}
    for r in rels:
        first.setdefault(str(Path(r).with_suffix(".png")), []).append(r)
    out = {}
    for key, group in first.items():
        for r in group:
            out[r] = key if len(group) == 1 else r + ".png"
    return out


def read_image(path: Path, channels: int, dtype: str | None) -> np.ndarray:
    """(C, H, W) of an image file, read as ingest reads it (`mpfpipe.data.imagefile`); RGB with equal channels
    becomes grey. One DataError naming the file when the model cannot take it."""
    from ..data.imagefile import check_for_model
    from ..data.sources import read_file, tiff_damage_check, to_chw
    with tiff_damage_check(path):
        img = to_chw(read_file(path, "image"), str(path))
    return check_for_model(img, channels, dtype, path)


def upsample_labels(labels: np.ndarray, f: int, size: tuple) -> np.ndarray:
    """(h, w) class ids at the model's resolution -> ``size`` (H, W): each pixel repeated F x F; the H - F h
    rows and W - F w columns that the down-sampling dropped repeat the last ones."""
    H, W = size
    out = np.repeat(np.repeat(labels, f, axis=0), f, axis=1) if f > 1 else labels
    if out.shape != (H, W):
        out = np.pad(out, ((0, H - out.shape[0]), (0, W - out.shape[1])), mode="edge")
    return np.ascontiguousarray(out)


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def png_bytes(labels: np.ndarray) -> bytes:
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo
    info = PngInfo()
    info.add_text("Software", f"mpfpipe {__version__}")
    buf = io.BytesIO()
    Image.fromarray(labels.astype(np.uint8), mode="L").save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()
