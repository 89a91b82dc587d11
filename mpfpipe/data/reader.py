"""The training side's view of a dataset: open, list a split, read image i (normalised, augmented), count classes.

A :class:`Dataset` holds only the path and the attributes when pickled, so it can be sent to Dask workers; each
process opens the Zarr arrays on first use and reads one chunk per image.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import _integrity
from ..errors import DataError
from .augment import AugmentSpec, augment
from .layout import SPLIT_NAMES, open_group


@dataclass
class Sample:
    """One image ready for training: ``image`` float32 (C, h, w), ``labels`` uint8 (h, w) with the mask folded
    in (masked-out pixels are ``ignore_index``), and its ``index`` in the dataset."""
    image: np.ndarray
    labels: np.ndarray
    index: int


def normalise(raw: np.ndarray, normalisation: dict) -> np.ndarray:
    """``(raw - mean[c]) / std[c]`` per channel (axis 0) as float32; ``raw`` is (C, ...)."""
    raw = np.asarray(raw)
    mean = np.asarray(normalisation["mean"], dtype=np.float64)
    std = np.asarray(normalisation["std"], dtype=np.float64)
    if raw.ndim < 1 or raw.shape[0] != mean.size or std.size != mean.size:
        raise DataError(f"normalise: image has {raw.shape[0] if raw.ndim else 0} channel(s) (shape {raw.shape}), "
                        f"the normalisation has {mean.size}")
    std = np.where(std > 1e-12, std, 1.0)
    extra = (1,) * (raw.ndim - 1)
    out = raw.astype(np.float32) - mean.astype(np.float32).reshape(-1, *extra)
    out *= (1.0 / std).astype(np.float32).reshape(-1, *extra)
    return out


class Dataset:
    """A complete mpfpipe dataset (see :mod:`mpfpipe.data.layout`); create with :func:`open_dataset`."""

    def __init__(self, path):
        self.path = Path(path).absolute()
        group, attrs = open_group(self.path)
        self._group = group
        self.attrs = attrs
        images = group["images"]
        self.n_images = int(images.shape[0])
        self.channels = int(images.shape[1])
        self.dtype = np.dtype(images.dtype)
        self.class_names = list(attrs["class_names"])
        self.n_classes = len(self.class_names)
        self.ignore_index = int(attrs["ignore_index"])
        self.normalisation = {"mean": list(attrs["normalisation"]["mean"]),
                              "std": list(attrs["normalisation"]["std"])}
        self.sizes = [(int(h), int(w)) for h, w in attrs["sizes"]]
        self.names = list(attrs["names"])
        self.positive = [bool(p) for p in attrs.get("positive", [])]
        self.label_mapping = attrs["label_mapping"]
        self.has_masks = "masks" in group
        self.volume = attrs.get("volume")  # a volume dataset's voxel size, chunks and z runs (data.volumeset)

    # pickling: only the path (and attrs) travel; the arrays are reopened lazily
    def __getstate__(self):
        state = dict(self.__dict__)
        state["_group"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    @property
    def group(self):
        if self._group is None:
            self._group, _ = open_group(self.path)
        return self._group

    def __len__(self) -> int:
        return self.n_images

    def __repr__(self) -> str:
        return (f"Dataset({str(self.path)!r}, n_images={self.n_images}, channels={self.channels}, "
                f"classes={self.class_names})")

    def split(self, name: str) -> list[int]:
        """Image indices of split ``name`` ("train", "val", "test"; "all" = every image), or of a union such as
        "train+val" (sorted: e.g. a final model trained on train and val for an iteration count chosen on val)."""
        if name == "all":
            return list(range(self.n_images))
        splits = self.attrs["splits"]
        parts = [p.strip() for p in str(name).split("+")]
        for part in parts:
            if part not in splits:
                raise DataError(f"unknown split {part!r} in {self.path}; known: {', '.join(list(splits) + ['all'])}"
                                + (", or a union such as 'train+val'" if len(splits) > 1 else ""))
        if len(set(parts)) != len(parts):
            raise DataError(f"split {name!r} names a split twice")
        idx = [self._split_index(part, i) for part in parts for i in splits[part]]
        if not idx:
            raise DataError(f"split {name!r} of {self.path} is empty (ingest with --split to make one)")
        return idx if len(parts) == 1 else sorted(idx)

    def _split_index(self, part: str, i) -> int:
        # a split edited by hand (or written by another tool) may list an image the dataset does not have
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= int(i) < self.n_images:
            raise DataError(f"{self.path}: split {part!r} lists image {i!r}, but the dataset has {self.n_images} "
                            f"image(s) (indices 0..{self.n_images - 1})")
        return int(i)

    def split_sizes(self) -> dict[str, int]:
        return {name: len(self.attrs["splits"].get(name, [])) for name in SPLIT_NAMES}

    def _check(self, i) -> int:
        if not isinstance(i, (int, np.integer)) or not 0 <= int(i) < self.n_images:
            raise DataError(f"image index {i!r} out of range 0..{self.n_images - 1} in {self.path}")
        return int(i)

    def chunk(self, name: str, i: int) -> np.ndarray:
        """The whole stored chunk of image i in array ``name`` ("images", "labels", "masks"), checked against
        its ingest checksum: a missing or damaged chunk is a DataError naming the array, image and file (one
        image is one chunk, so this decodes exactly what a read of the valid region would)."""
        i = self._check(i)
        sums = (self.attrs.get("checksums") or {}).get(name)  # datasets from before checksums: not checked
        arr = self.group[name]
        coords = (i // arr.chunks[0],) + (0,) * (arr.ndim - 1)  # a volume's chunk holds several sections
        return _integrity.read_checked(arr, i, store=self.path, array=name, coords=coords,
                                       expected=sums[i] if sums else None, what=f"image {i}")

    def verify(self) -> list[str]:
        """Read every chunk of every array; the problems found (empty when the dataset is intact)."""
        problems = []
        for name in ("images", "labels", "masks"):
            if name == "masks" and not self.has_masks:
                continue
            for i in range(self.n_images):
                try:
                    self.chunk(name, i)
                except DataError as exc:
                    problems.append(str(exc))
        return problems

    def raw_image(self, i: int) -> np.ndarray:
        """Image i as stored (source dtype), (C, h, w) valid region."""
        i = self._check(i)
        h, w = self.sizes[i]
        return self.chunk("images", i)[:, :h, :w]

    def raw_labels(self, i: int) -> np.ndarray:
        """Labels of image i, (h, w) uint8, with the mask (if any) folded in as ``ignore_index``."""
        i = self._check(i)
        h, w = self.sizes[i]
        lab = self.chunk("labels", i)[:h, :w]
        if self.has_masks:
            mask = self.chunk("masks", i)[:h, :w]
            lab = np.where(mask != 0, lab, np.uint8(self.ignore_index)).astype(np.uint8)
        return lab

    def read(self, i: int, *, augment: AugmentSpec | None = None, seed: int = 0, epoch: int = 0,
             normalise: bool = True) -> Sample:
        """Image i as float32 (normalised unless ``normalise=False``) with its labels, augmented for
        (seed, epoch, i) when ``augment`` is given (the augmentation follows the normalisation)."""
        i = self._check(i)
        raw = self.raw_image(i)
        image = _normalise(raw, self.normalisation) if normalise else raw.astype(np.float32)
        labels = self.raw_labels(i)
        spec = AugmentSpec.from_dict(augment) if isinstance(augment, dict) else augment
        if spec is not None:
            image, labels = _augment(image, labels, spec, seed, epoch, i, self.ignore_index)
        return Sample(image=image, labels=labels, index=i)

    def z_runs(self, split: str) -> list[list[int]]:
        """The runs of consecutive sections ``[z0, z1)`` of ``split`` (or a union such as "train+val")."""
        from .volumeset import z_runs
        return z_runs(self.split(split))

    def read_block(self, z0: int, z1: int, *, normalise: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Sections z0..z1-1 of a volume as one block: the image (C, nz, h, w) float32 (normalised unless
        ``normalise=False``) and the labels (nz, h, w) uint8 with masks folded in; every section checked."""
        if self.volume is None:
            raise DataError(f"{self.path} is a dataset of separate images, not a volume (ingest with --volume)")
        if not 0 <= z0 < z1 <= self.n_images:
            raise DataError(f"sections {z0}..{z1 - 1} are outside the volume's 0..{self.n_images - 1}")
        raw = np.stack([self.raw_image(z) for z in range(z0, z1)], axis=1)
        image = _normalise(raw, self.normalisation) if normalise else raw.astype(np.float32)
        return image, np.stack([self.raw_labels(z) for z in range(z0, z1)])

    def class_counts(self, indices=None, *, augment: AugmentSpec | None = None, seed: int = 0,
                     epoch: int = 0) -> np.ndarray:
        """Pixels of each class (ignored pixels excluded) over ``indices`` (default: all), (K,) int64; with
        ``augment``, of the labels as augmented for (seed, epoch, index)."""
        idx = range(self.n_images) if indices is None else [self._check(i) for i in indices]
        spec = AugmentSpec.from_dict(augment) if isinstance(augment, dict) else augment
        total = np.zeros(self.n_classes, np.int64)
        stored = self.attrs.get("class_counts")
        for i in idx:
            if spec is None and stored is not None:
                total += np.asarray(stored[i], dtype=np.int64)
                continue
            lab = self.raw_labels(i)
            if spec is not None:
                _, lab = _augment(None, lab, spec, seed, epoch, i, self.ignore_index)
            total += np.bincount(lab.ravel(), minlength=256)[: self.n_classes].astype(np.int64)
        return total


_normalise = normalise
_augment = augment


_CACHE: dict = {}


def cached_dataset(path) -> Dataset:
    """An opened dataset per process (Dask workers read many blocks of one); reopened when it was replaced."""
    p = Path(path).absolute()
    key = (str(p), (p / "zarr.json").stat().st_mtime_ns)
    ds = _CACHE.get(key)
    if ds is None:
        _CACHE.clear()
        ds = _CACHE[key] = Dataset(p)
    return ds


def open_dataset(path) -> Dataset:
    """Open a complete dataset; DataError with the reason if ``path`` is not one."""
    return Dataset(path)
