"""Write a dataset atomically: build it in a temporary directory beside the output, then rename it into place.

Both ``ingest`` (real files) and the synthetic generators feed :func:`write_dataset` with :class:`Record` s; a
failure at any point removes the temporary directory, so nothing that looks like a dataset is left behind.
"""
from __future__ import annotations

import datetime
import os
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import _integrity, _lock, _safety
from ..errors import DataError
from .layout import FORMAT_KEY, FORMAT_VERSION, IGNORE_INDEX, compressors
from .splits import stratified_split


@dataclass
class Record:
    """One image ready to store: ``image`` (C, h, w), ``labels`` (h, w) uint8 class ids, optional ``mask``."""
    name: str
    image: np.ndarray
    labels: np.ndarray
    mask: np.ndarray | None = None
    group: str = ""
    original_size: tuple[int, int] | None = None


def check_output(output, overwrite: bool, inputs=()) -> Path:
    """Fail early if OUTPUT exists (without overwrite), is not an mpfpipe dataset, or is / holds / lies in one
    of ``inputs`` (see `mpfpipe._safety`)."""
    output = Path(output)
    _safety.check_outputs([("output", output, ("dataset",))], inputs=inputs, overwrite=overwrite)
    return output


def _combine(stats):
    """Chan et al. parallel combination of per-image (count, mean, M2) per channel -> (mean, std)."""
    n = 0.0
    mean = None
    m2 = None
    for cnt, mu, s2 in stats:
        if cnt == 0:
            continue
        if mean is None:
            n, mean, m2 = float(cnt), mu.copy(), s2.copy()
            continue
        tot = n + cnt
        delta = mu - mean
        mean = mean + delta * (cnt / tot)
        m2 = m2 + s2 + delta ** 2 * (n * cnt / tot)
        n = tot
    if mean is None:
        raise DataError("no pixels to compute normalisation statistics from")
    std = np.sqrt(m2 / n)
    std = np.where(std > 1e-12, std, 1.0)
    return [float(v) for v in mean], [float(v) for v in std]


@_lock.locked("output", "dataset")
def write_dataset(output, records: Iterable[Record], *, n: int, channels: int, dtype, hmax: int, wmax: int,
                  class_names: list[str], label_mapping: dict, with_masks: bool = False, split=None,
                  seed: int = 0, provenance: dict | None = None, downsample: int = 1, overwrite: bool = False,
                  progress: bool = False, extra_attrs: dict | None = None, inputs=(), chunks=None,
                  splits: dict | None = None) -> Path:
    """Store ``n`` records as a dataset at ``output`` (see :mod:`mpfpipe.data.layout`); returns the path.

    chunks: the (z, y, x) chunk of a volume (`mpfpipe.data.volumeset`; default one image per chunk); its
    sections are written a chunk's depth at a time, so no chunk is written twice. splits: the image indices of
    each split as given (a volume's z sections), instead of the stratified split by ``split``."""
    import zarr
    from tqdm import tqdm

    from .. import __version__

    output = check_output(output, overwrite, inputs).absolute()
    if n <= 0:
        raise DataError("no images to write")
    dtype = np.dtype(dtype)
    k = len(class_names)
    if not 1 <= k < IGNORE_INDEX:
        raise DataError(f"{k} classes: need between 1 and {IGNORE_INDEX - 1}")
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.parent / f".{output.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        group = zarr.open_group(str(tmp), mode="w-", zarr_format=3)
        group.attrs[FORMAT_KEY] = {"version": FORMAT_VERSION, "complete": False}
        cz, cy, cx = chunks or (1, hmax, wmax)
        images = group.create_array("images", shape=(n, channels, hmax, wmax), chunks=(cz, channels, cy, cx),
                                    dtype=dtype, compressors=compressors(), fill_value=0)
        labels = group.create_array("labels", shape=(n, hmax, wmax), chunks=(cz, cy, cx), dtype=np.uint8,
                                    compressors=compressors(), fill_value=IGNORE_INDEX)
        masks = None
        if with_masks:
            masks = group.create_array("masks", shape=(n, hmax, wmax), chunks=(cz, cy, cx), dtype=np.uint8,
                                       compressors=compressors(), fill_value=0)
        out = _Chunked(cz, n, {"images": images, "labels": labels, "masks": masks})
        names, groups, sizes, original_sizes, counts, stats = [], [], [], [], [], []
        sums = {"images": [], "labels": [], **({"masks": []} if with_masks else {})}  # per-chunk CRC-32
        pad_img = np.zeros((channels, hmax, wmax), dtype)
        pad_lab = np.full((hmax, wmax), IGNORE_INDEX, np.uint8)
        pad_mask = np.zeros((hmax, wmax), np.uint8)
        i = -1
        for i, rec in enumerate(tqdm(records, total=n, disable=not progress, desc="ingest", unit="img",
                                     leave=False)):
            if i >= n:
                raise DataError(f"more than the expected {n} images")
            img, lab = rec.image, rec.labels
            if img.ndim != 3 or img.shape[0] != channels:
                raise DataError(f"{rec.name}: image has shape {img.shape}, expected ({channels}, h, w) like the "
                                "other images")
            if img.dtype != dtype:
                raise DataError(f"{rec.name}: image dtype {img.dtype} differs from the other images ({dtype})")
            h, w = img.shape[1:]
            if lab.shape != (h, w):
                raise DataError(f"{rec.name}: labels have shape {lab.shape}, image is {h}x{w}")
            if h > hmax or w > wmax or h == 0 or w == 0:
                raise DataError(f"{rec.name}: image size {h}x{w} outside the expected 1..{hmax}x1..{wmax}")
            bad = (lab >= k) & (lab != IGNORE_INDEX)
            if bad.any():
                raise DataError(f"{rec.name}: label class ids {sorted(np.unique(lab[bad]).tolist())[:8]} are "
                                f"outside the {k} classes {class_names}")
            pad_img[:] = 0
            pad_img[:, :h, :w] = img
            out.put("images", i, pad_img)
            sums["images"].append(_integrity.crc(pad_img))
            folded = lab
            if masks is not None:
                msk = np.zeros((h, w), np.uint8) if rec.mask is None else (np.asarray(rec.mask) != 0)
                if msk.shape != (h, w):
                    raise DataError(f"{rec.name}: mask has shape {msk.shape}, image is {h}x{w}")
                pad_mask[:] = 0
                pad_mask[:h, :w] = msk
                out.put("masks", i, pad_mask)
                sums["masks"].append(_integrity.crc(pad_mask))
                folded = np.where(msk != 0, lab, IGNORE_INDEX)
            pad_lab[:] = IGNORE_INDEX
            pad_lab[:h, :w] = lab
            out.put("labels", i, pad_lab)
            sums["labels"].append(_integrity.crc(pad_lab))
            counts.append(np.bincount(folded.ravel(), minlength=256)[:k].astype(np.int64))
            x = img.reshape(channels, -1).astype(np.float64)
            mu = x.mean(axis=1)
            stats.append((x.shape[1], mu, ((x - mu[:, None]) ** 2).sum(axis=1)))
            names.append(rec.name)
            groups.append(rec.group)
            sizes.append([int(h), int(w)])
            original_sizes.append(list(rec.original_size or (h, w)))
        if i + 1 != n:
            raise DataError(f"got {i + 1} images, expected {n}")
        if not any(c.sum() for c in counts):
            raise DataError(f"no labelled pixel in any of the {n} images (every pixel is ignore / masked out, "
                            "e.g. by the label map): such a dataset has nothing to learn")
        positive = [bool(c[1:].sum() > 0) for c in counts]
        splits = splits if splits is not None else stratified_split(positive, split, seed)
        mean, std = _combine([stats[j] for j in splits["train"]])
        prov = {"mpfpipe_version": __version__,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                **(provenance or {})}
        group.update_attributes({  # one write of zarr.json
            "class_names": list(class_names), "ignore_index": IGNORE_INDEX, "label_mapping": label_mapping,
            "sizes": sizes, "original_sizes": original_sizes, "downsample": int(downsample),
            "normalisation": {"mean": mean, "std": std}, "splits": splits, "names": names, "groups": groups,
            "positive": positive, "has_defect": positive, "class_counts": [c.tolist() for c in counts],
            "provenance": prov, "checksums": {"algorithm": _integrity.ALGORITHM, **sums},
            **(extra_attrs or {})})
        group.attrs[FORMAT_KEY] = {"version": FORMAT_VERSION, "complete": True}  # last write
        _replace(tmp, output, overwrite, inputs)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return output


class _Chunked:
    """Sections buffered a chunk's depth at a time and written together (a chunk is compressed once)."""

    def __init__(self, depth: int, n: int, arrays: dict):
        self.depth, self.n = depth, n
        self.arrays = {k: a for k, a in arrays.items() if a is not None}
        self.buffers = {k: np.empty((depth, *a.shape[1:]), a.dtype) for k, a in self.arrays.items()}

    def put(self, name: str, i: int, section: np.ndarray) -> None:
        self.buffers[name][i % self.depth] = section
        if (i + 1) % self.depth == 0 or i + 1 == self.n:
            z0 = i - i % self.depth
            self.arrays[name][z0:i + 1] = self.buffers[name][: i + 1 - z0]


def _replace(tmp: Path, output: Path, overwrite: bool, inputs=()) -> None:
    """Move the finished ``tmp`` to ``output``; an old output is moved aside first and deleted after."""
    old = None
    if output.exists() or output.is_symlink():
        check_output(output, overwrite, inputs)  # again: it may have appeared while we ingested
        old = output.parent / f".{output.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(output, old)
    try:
        os.replace(tmp, output)
    except BaseException:
        if old is not None:
            os.replace(old, output)
        raise
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
