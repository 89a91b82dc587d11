"""``ingest``: real image files -> a dataset (label mapping, down-sampling, split, validation, atomic write).

Two passes. The first reads file headers (sizes) and every label image, checks counts, shapes and that every
label value has a class under the mapping, before anything is written. The second decodes each image, checks
its dtype and values (no NaN/inf), maps and down-samples it and streams it into the dataset, built in a
temporary directory that becomes OUTPUT only when complete.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError, ValueFormatError
from ..options import check as check_options
from . import volumeset
from .context import CONTEXT_KEY, section_indices
from .layout import IGNORE_INDEX, check_image_dtype
from .sources import Item, resolve_sources
from ..values import parse_split
from .writer import Record, check_output, write_dataset

AUTO_IDENTITY_MAX = 32   # label values all below this are taken as class ids, otherwise thresholded


# ----------------------------------------------------------------------------------------------- mappings
def parse_label_map(label_map) -> dict[int, int]:
    """``{source value: class id or "ignore"}`` (or a string ``"0:1,255:0"``) -> ``{int: int}``."""
    if isinstance(label_map, str):
        pairs = {}
        for part in label_map.replace(";", ",").split(","):
            if not part.strip():
                continue
            if ":" not in part and "=" not in part:
                raise ValueFormatError(f"label map {label_map!r}: expected 'value:class,...' e.g. '0:1,255:0'")
            k, v = part.replace("=", ":").split(":", 1)
            pairs[k.strip()] = v.strip()
        label_map = pairs
    if not isinstance(label_map, dict) or not label_map:
        raise ValueFormatError(f"label map {label_map!r}: expected a mapping of source values to class ids")
    out = {}
    for k, v in label_map.items():
        try:
            key = int(k)
            val = IGNORE_INDEX if str(v).lower() == "ignore" else int(v)
        except (TypeError, ValueError):
            raise ValueFormatError(f"label map entry {k!r}: {v!r}: values and class ids must be integers "
                            "(or 'ignore')") from None
        if not (0 <= val < IGNORE_INDEX or val == IGNORE_INDEX):
            raise ValueFormatError(f"label map entry {k}: {v}: class ids must be 0..254 or 'ignore'")
        out[key] = val
    return out


def resolve_mapping(values: set[int], *, label_map=None, positive=None, mask_threshold=127,
                    class_names=None, layout="") -> tuple[dict, list[str]]:
    """The label mapping (as stored in the dataset) and the class names, from the options and the values seen."""
    if label_map is not None and positive is not None:
        raise DataError("give either a label map or a positive value, not both")
    if label_map is not None:
        lm = parse_label_map(label_map)
        mapping = {"mode": "map", "map": {str(k): v for k, v in sorted(lm.items())}}
        k = max([v for v in lm.values() if v != IGNORE_INDEX], default=0) + 1
        default = [f"class{i}" for i in range(k)]
    elif positive is not None:
        if values and int(positive) not in values:  # class 1 would be empty: nothing to learn
            raise DataError(f"positive value {positive}: no label pixel has that value (label values: "
                            f"{', '.join(map(str, sorted(values)[:12]))}{' ...' if len(values) > 12 else ''})")
        mapping, k = {"mode": "positive", "value": int(positive)}, 2
        default = ["background", "foreground"]
    elif values and max(values) < AUTO_IDENTITY_MAX:
        k = max(max(values) + 1, 2)
        mapping, default = {"mode": "identity"}, [f"class{i}" for i in range(k)]
    else:
        if not 0 <= mask_threshold < 65535:
            raise DataError(f"mask threshold {mask_threshold} outside 0..65534")
        mapping, k = {"mode": "threshold", "threshold": int(mask_threshold)}, 2
        default = ["background", "defect"] if layout == "magnetic-tile" else ["background", "foreground"]
    if class_names is None:
        return mapping, default
    names = [s.strip() for s in class_names.split(",")] if isinstance(class_names, str) else list(class_names)
    if mapping["mode"] in ("positive", "threshold") and len(names) != 2:
        raise DataError(f"class names {names}: a {mapping['mode']} mapping makes 2 classes")
    if mapping["mode"] == "identity":
        k = len(names)  # values >= k are reported by map_labels as outside the mapping
    if len(names) < k or len(names) < 1 or any(not n for n in names):
        raise DataError(f"class names {names}: need {k} non-empty names for the mapped class ids 0..{k - 1}")
    if len(set(names)) != len(names):
        raise DataError(f"class names {names} are not distinct")
    return mapping, [str(n) for n in names]


def map_labels(raw: np.ndarray, mapping: dict, n_classes: int, what: str) -> np.ndarray:
    """Source label values -> uint8 class ids; a value with no class is an error naming ``what``."""
    mode = mapping["mode"]
    if mode == "threshold":
        return (raw > mapping["threshold"]).astype(np.uint8)
    if mode == "positive":
        return (raw == mapping["value"]).astype(np.uint8)
    vals = np.unique(raw)
    if mode == "identity":
        bad = vals[(vals >= n_classes) & (vals != IGNORE_INDEX) | (vals < 0)]
        if bad.size:
            raise DataError(f"{what}: label values {bad.tolist()[:8]} are outside the mapping (class ids "
                            f"0..{n_classes - 1}, {IGNORE_INDEX} = ignore)")
        return raw.astype(np.uint8)
    table = {int(k): v for k, v in mapping["map"].items()}
    bad = [int(v) for v in vals if int(v) not in table]
    if bad:
        raise DataError(f"{what}: label values {bad[:8]} are outside the label mapping "
                        f"{table}")
    out = np.empty(raw.shape, np.uint8)
    for v in vals:
        out[raw == v] = table[int(v)]
    return out


# ------------------------------------------------------------------------------------------- down-sampling
def downsample_image(img: np.ndarray, f: int) -> np.ndarray:
    """(C, h, w) -> (C, h//f, w//f): mean of each f x f block (the remainder rows/columns are dropped);
    integer images are rounded back to their dtype."""
    if f == 1:
        return img
    c, h, w = img.shape
    hh, ww = h // f, w // f
    x = img[:, : hh * f, : ww * f].reshape(c, hh, f, ww, f).mean(axis=(2, 4), dtype=np.float64)
    if np.issubdtype(img.dtype, np.integer):
        x = np.rint(x)
    return x.astype(img.dtype)


def downsample_labels(lab: np.ndarray, f: int, n_classes: int) -> np.ndarray:
    """(h, w) class ids -> (h//f, w//f): the most frequent non-ignored class of each block (ties go to the
    higher class id, so thin foreground survives a tie with background); all-ignored blocks stay ignored."""
    if f == 1:
        return lab
    h, w = lab.shape
    hh, ww = h // f, w // f
    blocks = lab[: hh * f, : ww * f].reshape(hh, f, ww, f)
    counts = np.stack([(blocks == k).sum(axis=(1, 3)) for k in range(n_classes)])
    best = (n_classes - 1 - np.argmax(counts[::-1], axis=0)).astype(np.uint8)
    best[counts.sum(axis=0) == 0] = IGNORE_INDEX
    return best


def downsample_mask(mask: np.ndarray, f: int) -> np.ndarray:
    """A block is used only when all its pixels are."""
    if f == 1:
        return mask
    h, w = mask.shape
    hh, ww = h // f, w // f
    return (mask[: hh * f, : ww * f].reshape(hh, f, ww, f) != 0).all(axis=(1, 3)).astype(np.uint8)


# -------------------------------------------------------------------------------------------------- ingest
def _load_image(item: Item) -> np.ndarray:
    img = item.image()
    if img.ndim != 3:
        raise DataError(f"{item.image_path}: image of shape {img.shape}")
    dtype = check_image_dtype(img.dtype, item.image_path)
    if np.issubdtype(img.dtype, np.floating) and not np.isfinite(img).all():
        raise DataError(f"{item.image_path}: image holds NaN or infinite values")
    if img.shape[1:] != tuple(item.size):
        raise DataError(f"{item.image_path}: decoded size {img.shape[1:]} differs from the header {item.size}")
    return img.astype(dtype, copy=False)


def ingest(sources, output, *, label_map=None, positive=None, mask_threshold: int = 127, downsample: int = 1,
           split=None, seed: int = 0, overwrite: bool = False, progress: bool = False,
           class_names=None, volume: bool = False, sections=None, voxel_size=None,
           voxel_unit: str | None = None, section_context: int = 0) -> Path:
    """Ingest image/label sources (see :mod:`mpfpipe.data.sources`) into a dataset at ``output``.

    label_map: ``{source value: class id | "ignore"}`` (or ``"0:1,255:0"``); every label value must be mapped.
    positive: the source value that becomes class 1 (all other values class 0), e.g. 0 for ISBI membranes.
    Without either: label values all < 32 are class ids as they are; otherwise ``value > mask_threshold`` is
    class 1 (binary masks, anti-aliased masks). class_names: names of the class ids (list or "a,b").
    downsample: integer factor (block mean for images, block majority for labels). split: fractions
    (train, val[, test]) stratified by "image holds a non-background pixel", seeded by ``seed``.
    volume: the stack is one (z, y, x) volume (`mpfpipe.data.volumeset`): chunked in z too, ``split`` fractions
    become contiguous z ranges or ``sections`` names each split's sections ("train=0-11,val=12-15,test=16-19"),
    and ``voxel_size`` (z, y, x; e.g. "50,4,4") with ``voxel_unit`` (e.g. "nanometer") is kept in the metadata
    (default: the source's, when it records one).
    section_context: K > 0 stores image i of a stack with the K sections above and below as extra maps
    (`mpfpipe.data.context`: C * (2K + 1) channels, mirrored at the stack's ends); ``attrs["section_context"]``
    records K and the source's channel count, and a net trained on it records K for ``segment``.
    Raises DataError / OutputExistsError; on failure nothing is left at ``output``.
    """
    check_options("ingest", locals())
    sources = [sources] if isinstance(sources, (str, Path)) else list(sources)
    output = check_output(output, overwrite, inputs=sources)
    try:
        f = int(downsample)
    except (TypeError, ValueError):
        raise DataError(f"downsample factor {downsample!r} is not an integer") from None
    if f < 1 or f != downsample:
        raise DataError(f"downsample factor {downsample!r} must be an integer >= 1")
    split = parse_split(split)
    srcs = [str(s) for s in sources]
    if not volume and (sections is not None or voxel_size is not None or voxel_unit is not None):
        raise ValueFormatError("sections, voxel size and voxel unit describe a volume: add --volume")
    items, layout = resolve_sources(srcs)
    if section_context:
        _check_context_stack(items, layout, volume)
    vol_kw = {}
    if volume:
        vol_kw = _volume_layout(items, layout, srcs[0], f, split=split, sections=sections, voxel_size=voxel_size,
                                voxel_unit=voxel_unit)

    # pass 1: label values and shapes, before anything is written
    values: set[int] = set()
    uniques = []
    for it in items:
        lab = it.labels()
        if lab.shape != tuple(it.size):
            raise DataError(f"{it.label_path}: labels are {lab.shape[0]}x{lab.shape[1]} but the image "
                            f"{it.image_path} is {it.size[0]}x{it.size[1]}")
        u = np.unique(lab)
        uniques.append(u)
        values.update(int(v) for v in u)
        if it.size[0] < f or it.size[1] < f:
            raise DataError(f"{it.image_path}: {it.size[0]}x{it.size[1]} is smaller than the downsample "
                            f"factor {f}")
    mapping, names = resolve_mapping(values, label_map=label_map, positive=positive,
                                     mask_threshold=mask_threshold, class_names=class_names, layout=layout)
    k = len(names)
    for it, u in zip(items, uniques):  # label values outside the mapping: fail before writing
        map_labels(u, mapping, k, it.label_path)

    first = _load_image(items[0])
    channels, dtype = first.shape[0], first.dtype
    load = _context_loader(items, first, section_context)
    hmax = max(it.size[0] for it in items) // f
    wmax = max(it.size[1] for it in items) // f
    with_masks = items[0].mask is not None

    def records():
        for j, it in enumerate(items):
            img = load(j)
            lab = map_labels(it.labels(), mapping, k, it.label_path)
            mask = None
            if it.mask is not None:
                mask = downsample_mask(np.asarray(it.mask()), f)
            yield Record(name=it.name, group=it.group, image=downsample_image(img, f),
                         labels=downsample_labels(lab, f, k), mask=mask, original_size=tuple(it.size))

    provenance = {"sources": [str(Path(s).absolute()) for s in srcs], "layout": layout,
                  "options": {"label_map": mapping, "positive": positive, "mask_threshold": mask_threshold,
                              "downsample": f, "split": list(split) if split else None, "seed": seed,
                              "class_names": names, "volume": bool(volume), "sections": sections,
                              "section_context": int(section_context)}}
    if section_context:
        vol_kw["extra_attrs"] = {CONTEXT_KEY: {"sections": int(section_context), "channels": int(channels)}}
    return write_dataset(output, records(), n=len(items), channels=channels * (2 * section_context + 1),
                         dtype=dtype, hmax=hmax, wmax=wmax,
                         class_names=names, label_mapping=mapping, with_masks=with_masks, split=split, seed=seed,
                         provenance=provenance, downsample=f, overwrite=overwrite, progress=progress, inputs=sources,
                         **vol_kw)


def _check_context_stack(items, layout: str, volume: bool) -> None:
    """Section context needs one stack of equal sections, and not a volume dataset (a 3D net sees z itself)."""
    if volume:
        raise DataError("--section-context is for 2D nets on a stack; a --volume dataset is for 3D nets, which "
                        "read the neighbouring sections themselves")
    volumeset.check_stack(items, layout, "--section-context")


def _context_loader(items, first, k: int):
    """``load(j)``: image j checked against the first (channels, dtype), with its context maps when k > 0; each
    section is decoded once while it is within k sections of the image being written."""
    cache = {0: first}

    def one(j):
        if j not in cache:
            img = _load_image(items[j])
            if img.shape[0] != first.shape[0] or img.dtype != first.dtype:
                raise DataError(f"{items[j].image_path}: {img.shape[0]} channel(s) of {img.dtype}, but "
                                f"{items[0].image_path} has {first.shape[0]} of {first.dtype}; all images must match")
            cache[j] = img
        return cache[j]

    def load(j):
        out = one(j) if k == 0 else np.concatenate([one(i) for i in section_indices(j, k, len(items))], axis=0)
        for i in [i for i in cache if i < j - k]:  # images are written in order: earlier sections are done
            del cache[i]
        return out
    return load


def _volume_layout(items, layout: str, source: str, f: int, **kw) -> dict:
    """write_dataset's chunks, splits and ``volume`` attribute for a stack ingested as a volume."""
    from .volume import open_volume
    h, w = volumeset.check_stack(items, layout)
    nz, ny, nx = len(items), h // f, w // f
    splits = volumeset.volume_splits(nz, kw["split"], kw["sections"])
    scale, units = None, None
    if kw["voxel_size"] is None and not source.lower().endswith(".npy"):
        src = open_volume(source)  # the voxel size the TIFF / HDF5 source records, if any
        scale, units = src.scale, src.units
    meta = volumeset.volume_meta(nz=nz, ny=ny, nx=nx, splits=splits, voxel_size=kw["voxel_size"],
                                 unit=kw["voxel_unit"], source_scale=scale, source_units=units, downsample=f)
    return {"chunks": tuple(meta["chunks"]), "splits": splits, "extra_attrs": {volumeset.VOLUME_KEY: meta}}
