"""Readers of the supported source layouts, turned into a list of lazily loaded :class:`Item` s.

Supported SOURCE arguments (see ``mpfpipe ingest --help``):

- Stacks: ``IMAGES LABELS [MASKS]``, each a multi-page TIFF (``.tif``/``.tiff``) or a ``.npy`` array: images
  (N, H, W) or (N, C, H, W) (or (N, H, W, C) with C <= 4), labels (N, H, W), masks (N, H, W) (non-zero = use).
  The ISBI 2012 files ``train-volume.tif train-labels.tif`` are such a pair. A stack can also be an HDF5 dataset
  named ``FILE.h5:DATASET`` (CREMI: ``sample_A.h5:volumes/raw sample_A.h5:volumes/labels/clefts``), read one slice
  at a time (`mpfpipe.data.hdf5`).
- One folder, searched recursively for
  * ``images/`` (or ``imgs/``) beside ``masks/`` (or ``labels/``, ``gt/``), files matched by stem (NEU-Seg:
    ``train/images/000002.jpg`` + ``train/masks/000002.png``);
  * images with a same-stem ``.png`` mask in the same folder (magnetic tile: ``MT_Crack/Imgs/x.jpg`` +
    ``x.png``), or a mask named ``<stem>_mask.png`` (also ``_label``, ``_labels``, ``_gt``, ``_seg``).
- Two folders ``IMAGES_DIR MASKS_DIR`` holding image files directly, matched by stem.
- Several folders, each scanned as above, concatenated.

Image files: PNG, JPEG, TIFF, BMP. RGB(A) images whose channels are equal are reduced to one channel; alpha is
dropped. Every image/mask problem is a :class:`~mpfpipe.errors.DataError` that names the file.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from ..errors import DataError
from . import hdf5
from .imagefile import image_size, read_image_file, tiff_damage_check  # noqa: F401 - also its old path

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
STACK_EXTS = (".tif", ".tiff", ".npy")
IMAGE_DIR_NAMES = ("images", "imgs", "image", "img")
MASK_DIR_NAMES = ("masks", "labels", "mask", "label", "gt", "annotations")
MASK_SUFFIXES = ("_mask", "_masks", "_label", "_labels", "_gt", "_seg")


@dataclass
class Item:
    """One source image: its name, size (from the file header) and loaders of image, labels and mask."""
    name: str
    group: str
    size: tuple[int, int]
    image: Callable[[], np.ndarray]          # -> (C, H, W), stored dtype
    labels: Callable[[], np.ndarray]         # -> (H, W) raw label values (integer dtype)
    mask: Callable[[], np.ndarray] | None = None
    image_path: str = ""
    label_path: str = ""


# ---------------------------------------------------------------------------------------------- single arrays
def to_chw(arr: np.ndarray, what: str) -> np.ndarray:
    """(H, W) or (H, W, C<=4) -> (C, H, W); drops alpha, reduces equal RGB channels to one."""
    arr = np.asarray(arr)
    if arr.ndim == 2:
        return arr[None]
    if arr.ndim == 3 and arr.shape[-1] <= 4:
        if arr.shape[-1] in (2, 4):  # grey+alpha, RGBA
            arr = arr[..., :-1]
        if arr.shape[-1] == 3 and (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all():
            arr = arr[..., :1]
        return np.ascontiguousarray(np.moveaxis(arr, -1, 0))
    raise DataError(f"{what}: image array of shape {arr.shape} is not (H, W) or (H, W, C)")


def to_label2d(arr: np.ndarray, what: str) -> np.ndarray:
    """A label image as (H, W) integers; RGB labels with equal channels are reduced to one, alpha dropped."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] == 2:  # grey+alpha
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        rgb = arr[..., :3]
        if not ((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()):
            raise DataError(f"{what}: colour label image (channels differ); labels must be one channel")
        arr = rgb[..., 0]
    if arr.ndim != 2:
        raise DataError(f"{what}: label array of shape {arr.shape} is not (H, W)")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{what}: unsupported label dtype {arr.dtype} (labels must be integers)")
    return arr


def read_file(path: Path, role: str = "image") -> np.ndarray:
    """Decode one image file by the rule of ``role`` ("image" or "mask"), naming the file on any failure: the
    one reader of `mpfpipe.data.imagefile`."""
    return read_image_file(path, role)


def file_size(path: Path) -> tuple[int, int]:
    """(H, W) from the header of an image file (EXIF orientation applied), without decoding the pixels."""
    return image_size(path)


# --------------------------------------------------------------------------------------------------- stacks
def read_tiff_stack(path) -> np.ndarray:
    """Every page of a TIFF stack. A stack written in one call is one series; one written page by page
    (tifffile's append mode, many tools) is one series per page, which ``tifffile.imread`` would cut to its
    first page. A damaged file raises with the path named."""
    import tifffile

    try:
        with tiff_damage_check(path) as seen, tifffile.TiffFile(path) as tif:
            series = tif.series
            if seen.messages:
                raise DataError(f"{path}: damaged TIFF (truncated?): {seen.messages[0]}")
            if not series:
                raise DataError(f"{path}: TIFF holds no image")
            page = tuple(tif.pages[0].shape)  # the pages segment reads too: (Y, X) or interleaved RGB(A)
            if not (len(page) == 2 or (len(page) == 3 and page[-1] in (3, 4))):
                raise DataError(f"{path}: TIFF pages of shape {page} are not supported (need (Y, X) pages, one per "
                                "image; write a stack with photometric='minisblack')")
            if len(series) == 1:
                return series[0].asarray()
            kinds = {(tuple(s.shape), str(s.dtype)) for s in series}
            if len(kinds) != 1:
                raise DataError(f"{path}: a stack needs equal pages; its {len(series)} pages have shapes / types "
                                f"{sorted(kinds)[:3]}")
            return np.stack([s.asarray() for s in series])
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - tifffile raises many kinds, none naming the file
        raise DataError(f"{path}: cannot read TIFF (truncated or not a TIFF? {type(exc).__name__}: {exc})") from None


def load_stack(path: Path, kind: str) -> np.ndarray:
    """A TIFF or .npy stack as (N, C, H, W) for ``kind="images"`` or (N, H, W) for labels/masks (an HDF5
    ``FILE.h5:DATASET``: a `hdf5.Stack` of that shape, read slice by slice)."""
    if hdf5.parse_spec(path) is not None:
        return hdf5.Stack(path, kind)
    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        else:
            arr = read_tiff_stack(path)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{path}: cannot read {kind} stack ({type(exc).__name__}: {exc})") from None
    if kind == "images":
        if arr.ndim == 2:
            arr = arr[None, None]
        elif arr.ndim == 3:
            arr = arr[:, None]
        elif arr.ndim == 4 and arr.shape[-1] <= 4 < arr.shape[1]:
            arr = np.moveaxis(arr, -1, 1)
        elif arr.ndim != 4:
            raise DataError(f"{path}: image stack of shape {arr.shape}; expected (N, H, W) or (N, C, H, W)")
    else:
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3:
            raise DataError(f"{path}: {kind} stack of shape {arr.shape}; expected (N, H, W)")
    return arr


def _stack_name(p) -> str:
    spec = hdf5.parse_spec(p)
    return f"{Path(spec[0]).name}:{spec[1]}" if spec else Path(p).name


def stack_items(paths: list[Path]) -> list[Item]:
    if len(paths) not in (2, 3):
        raise DataError(f"stack input needs IMAGES LABELS [MASKS] files, got {len(paths)}: "
                        f"{', '.join(_stack_name(p) for p in paths)}")
    images = cache(lambda: load_stack(paths[0], "images"))
    labels = cache(lambda: load_stack(paths[1], "labels"))
    masks = cache(lambda: load_stack(paths[2], "masks")) if len(paths) == 3 else None
    n = images().shape[0]
    for p, arr in zip(paths[1:], (labels(), masks() if masks else None)):
        if arr is None:
            continue
        if arr.shape[0] != n:
            raise DataError(f"{_stack_name(paths[0])} has {n} images but {_stack_name(p)} has {arr.shape[0]}")
        if arr.shape[1:] != images().shape[2:]:
            raise DataError(f"{_stack_name(p)}: shape {arr.shape[1:]} per slice, images are {images().shape[2:]}")
    h, w = images().shape[2:]
    items = []
    for i in range(n):
        items.append(Item(
            name=f"{_stack_name(paths[0])}[{i}]", group=_stack_name(paths[0]), size=(int(h), int(w)),
            image=lambda i=i: np.asarray(images()[i]),
            labels=lambda i=i: to_label2d(labels()[i], f"{paths[1]} slice {i}"),
            mask=(lambda i=i: np.asarray(masks()[i])) if masks else None,
            image_path=f"{paths[0]}[{i}]", label_path=f"{paths[1]}[{i}]"))
    return items


# -------------------------------------------------------------------------------------------------- folders
def _files(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS
                  and not p.name.startswith("."))


def _mask_stem(p: Path) -> str:
    stem = p.stem
    for suf in MASK_SUFFIXES:
        if stem.lower().endswith(suf):
            return stem[: -len(suf)]
    return stem


def _by_stem(files: list[Path], strip: bool, where: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in files:
        s = _mask_stem(p) if strip else p.stem
        if s in out:
            raise DataError(f"{where}: two files with stem {s!r}: {out[s].name} and {p.name}")
        out[s] = p
    return out


def _unmatched(kind: str, names, where: Path) -> DataError:
    names = sorted(names)
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return DataError(f"{len(names)} {kind} in {where}: {', '.join(names[:5])}{more}")


def pair_dirs(img_dir: Path, mask_dir: Path) -> list[tuple[Path, Path]]:
    """Images of ``img_dir`` with the masks of ``mask_dir`` of the same stem; any unmatched file is an error."""
    imgs = _by_stem(_files(img_dir), False, img_dir)
    masks = _by_stem(_files(mask_dir), True, mask_dir)
    if imgs.keys() - masks.keys():
        raise _unmatched(f"image(s) without a mask in {mask_dir}", imgs.keys() - masks.keys(), img_dir)
    if masks.keys() - imgs.keys():
        raise _unmatched(f"mask(s) without an image in {img_dir}", masks.keys() - imgs.keys(), mask_dir)
    return [(imgs[s], masks[s]) for s in sorted(imgs)]


def _pair_same_dir(d: Path) -> list[tuple[Path, Path]]:
    files = _files(d)
    masks = {_mask_stem(p): p for p in files if _mask_stem(p) != p.stem}
    stems: dict[str, list[Path]] = {}
    for p in files:
        if _mask_stem(p) == p.stem:
            stems.setdefault(p.stem, []).append(p)
    for s, ps in stems.items():  # x.jpg + x.png: the .png is the mask
        if s not in masks and len(ps) == 2 and sum(p.suffix.lower() == ".png" for p in ps) == 1:
            masks[s] = next(p for p in ps if p.suffix.lower() == ".png")
    pairs, lonely = [], []
    for s, ps in sorted(stems.items()):
        rest = [p for p in ps if p != masks.get(s)]
        if s in masks and len(rest) == 1:
            pairs.append((rest[0], masks[s]))
        else:
            lonely.extend(p.name for p in rest)
    if pairs and lonely:
        raise _unmatched("image(s) without a mask (expected <stem>.png beside each image)", lonely, d)
    return pairs


def scan_folder(root: Path) -> list[tuple[Path, Path, str]]:
    """(image, mask, group) for every pair under ``root`` (see the module doc for the layouts)."""
    out = []
    for dirpath, dirnames, _ in os.walk(root):
        dirnames.sort()
        d = Path(dirpath)
        low = {n.lower(): n for n in dirnames}
        img_sub = next((low[n] for n in IMAGE_DIR_NAMES if n in low), None)
        mask_sub = next((low[n] for n in MASK_DIR_NAMES if n in low), None)
        group = d.relative_to(root).as_posix()
        group = root.name if group == "." else group
        if img_sub and mask_sub:
            out.extend((i, m, group) for i, m in pair_dirs(d / img_sub, d / mask_sub))
            dirnames[:] = [n for n in dirnames if n not in (img_sub, mask_sub)]
            continue
        if d.name.lower() in IMAGE_DIR_NAMES and d != root:
            group = d.parent.relative_to(root).as_posix() if d.parent != root else root.name
        out.extend((i, m, group) for i, m in _pair_same_dir(d))
    return out


def _file_item(img: Path, mask: Path, group: str, root: Path) -> Item:
    name = img.relative_to(root).as_posix() if img.is_relative_to(root) else img.name
    return Item(name=name, group=group, size=file_size(img),
                image=lambda: to_chw(read_file(img), str(img)),
                labels=lambda: to_label2d(read_file(mask, "mask"), str(mask)),
                image_path=str(img), label_path=str(mask))


def resolve_sources(sources) -> tuple[list[Item], str]:
    """Items of all SOURCE arguments, and the layout name ("stack", "folder", "magnetic-tile", "dir-pair")."""
    paths = [Path(s) for s in sources]
    if not paths:
        raise DataError("no input given: pass image/label stacks or a folder of images and masks")
    seen = [os.path.realpath(s) if hdf5.parse_spec(s) is None else str(s) for s in sources]
    twice = next((s for i, s in enumerate(sources) if seen[i] in seen[:i]), None)
    if twice is not None:  # the images as their own labels: a silent nonsense dataset
        raise DataError(f"{twice} is given twice among the sources: images, labels and masks must be different "
                        "files or folders")
    h5 = [hdf5.parse_spec(s) is not None for s in sources]
    for p, is_h5 in zip(paths, h5):
        if not is_h5 and not p.exists():
            raise DataError(f"{p}: no such file or folder")
    if any(h5):  # HDF5 datasets are stacks (the file and dataset are checked when the stack is opened)
        bad = [p.name for p, is_h5 in zip(paths, h5) if not is_h5 and (not p.is_file()
                                                                        or p.suffix.lower() not in STACK_EXTS)]
        if bad:
            raise DataError(f"unsupported input(s) {', '.join(bad)} beside HDF5 datasets: stacks must be "
                            "FILE.h5:DATASET, TIFF stacks or .npy arrays (IMAGES LABELS [MASKS])")
        items, layout = stack_items([str(s) for s in sources]), "stack"
    elif all(p.is_file() for p in paths):
        bad = [p.name for p in paths if p.suffix.lower() not in STACK_EXTS]
        if bad:
            raise DataError(f"unsupported input file(s) {', '.join(bad)}: files must be TIFF stacks or .npy "
                            "arrays (IMAGES LABELS [MASKS]); single images go in folders")
        items, layout = stack_items(paths), "stack"
    elif all(p.is_dir() for p in paths):
        found = [scan_folder(p) for p in paths]
        if len(paths) == 2 and not any(found) and _files(paths[0]) and _files(paths[1]):
            pairs = [(i, m, paths[0].name) for i, m in pair_dirs(paths[0], paths[1])]
            items, layout = [_file_item(i, m, g, paths[0]) for i, m, g in pairs], "dir-pair"
        else:
            for p, f in zip(paths, found):
                if not f:
                    raise DataError(f"{p}: no image/mask pairs found (expected images/ + masks/ folders, "
                                    "<stem>.jpg + <stem>.png side by side, or IMAGES_DIR MASKS_DIR)")
            items = [_file_item(i, m, g, p) for p, f in zip(paths, found) for i, m, g in f]
            mt = all(it.group.split("/")[0].startswith("MT_") for it in items)
            layout = "magnetic-tile" if mt else "folder"
    else:
        raise DataError("mix of files and folders in the input: give either stacks (files) or folders")
    if not items:
        raise DataError(f"no images found in {', '.join(map(str, paths))}")
    return items, layout
