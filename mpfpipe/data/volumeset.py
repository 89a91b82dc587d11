"""Datasets that hold a volume: one (z, y, x) stack with labels, chunked in z too, split by z sections.

A volume dataset is an ordinary dataset (:mod:`mpfpipe.data.layout`: ``images`` (Z, C, Y, X), ``labels`` (Z, Y, X),
image i = section z) with three differences, so everything that reads slices (2D training, ``segment`` of a
dataset, ``evaluate``) keeps working on it unchanged:

- chunks hold ``chunk_z`` sections (and, for wide sections, ``CHUNK_XY`` tiles in y and x), so a 3D block with
  its halo reads a few chunks rather than one per section; every section still has its own checksum (the CRC-32
  of its decoded bytes, which also catches a chunk that is missing: it decodes to the fill value);
- the splits are lists of sections chosen by z (contiguous ranges from ``--split`` fractions in z order, or the
  sections named by ``--sections``), never shuffled: a 3D network needs neighbouring sections;
- ``attrs["volume"]`` records the voxel size (z, y, x) and its unit (the ISBI 2012 stack: 50 nm sections, 4 nm
  pixels, so ``[50.0, 4.0, 4.0]`` nanometer), the chunk shape and each split's runs of consecutive sections
  (``z_runs``: ``{"train": [[z0, z1], ...]}``, half-open), which 3D training crops within.

All sections of a volume have one size (no padding), and down-sampling acts in y and x only (the voxel size
in y and x grows by the factor).
"""
from __future__ import annotations

import numpy as np

from ..errors import DataError, ValueFormatError
from ..values import SECTION_SPLITS, parse_sections, parse_split, parse_voxel_size

CHUNK_Z = 8        # sections per chunk: a 3D block with a z halo of a few sections touches one or two chunks
CHUNK_XY = 1024    # sections wider than this are tiled in y and x, so a block reads its region, not the section
VOLUME_KEY = "volume"


def chunk_shape(nz: int, ny: int, nx: int, chunk_z: int = CHUNK_Z) -> tuple[int, int, int]:
    """The (z, y, x) chunk of a volume of (nz, ny, nx) sections."""
    return min(nz, chunk_z), min(ny, CHUNK_XY), min(nx, CHUNK_XY)


def z_runs(sections) -> list[list[int]]:
    """Runs of consecutive sections as half-open ``[z0, z1]`` ranges: [0, 1, 4, 5, 6] -> [[0, 2], [4, 7]]."""
    runs: list[list[int]] = []
    for z in sorted(int(s) for s in sections):
        if runs and z == runs[-1][1]:
            runs[-1][1] = z + 1
        else:
            runs.append([z, z + 1])
    return runs


def volume_splits(nz: int, split=None, sections=None) -> dict[str, list[int]]:
    """The sections of each split: named by ``sections`` (see `mpfpipe.values.parse_sections`), or contiguous z
    ranges in the order train, val, test sized by the ``split`` fractions (largest remainder), or all in train."""
    named = parse_sections(sections)
    if named is not None:
        if split is not None:
            raise ValueFormatError("give either split fractions or the sections of each split, not both")
        outside = [z for idx in named.values() for z in idx if z >= nz]
        if outside:
            raise DataError(f"sections {outside[:8]} are outside the volume's {nz} sections (0..{nz - 1})")
        return named
    fractions = parse_split(split)
    if fractions is None:
        return {"train": list(range(nz)), "val": [], "test": []}
    want = np.asarray(fractions) * nz
    counts = np.floor(want).astype(int)
    for k in np.argsort(-(want - counts), kind="stable")[: nz - counts.sum()]:
        counts[k] += 1
    if any(f > 0 and c == 0 for f, c in zip(fractions, counts)):
        raise DataError(f"cannot split {nz} section(s) into the non-empty splits {fractions}")
    edges = np.concatenate([[0], np.cumsum(counts)])
    return {name: list(range(int(a), int(b))) for name, a, b in zip(SECTION_SPLITS, edges[:-1], edges[1:])}


def volume_meta(*, nz: int, ny: int, nx: int, splits: dict, voxel_size, unit, source_scale=None,
                source_units=None, downsample: int = 1, chunk_z: int = CHUNK_Z) -> dict:
    """``attrs["volume"]``: voxel size (given, else the source's, else unknown: 1, 1, 1 without a unit), chunk
    shape and each split's z runs."""
    vs = parse_voxel_size(voxel_size)
    if vs is None and source_scale is not None and list(source_scale) != [1.0, 1.0, 1.0]:
        vs = tuple(float(s) for s in source_scale)
        unit = unit or next(iter((source_units or {}).values()), None)
    if vs is None:
        vs, unit = (1.0, 1.0, 1.0), None
    vs = (vs[0], vs[1] * downsample, vs[2] * downsample)
    return {"shape": [nz, ny, nx], "voxel_size": list(vs), "unit": unit,
            "chunks": list(chunk_shape(nz, ny, nx, chunk_z)),
            "z_runs": {name: z_runs(idx) for name, idx in splits.items()}}


def check_stack(items, layout: str, option: str = "--volume") -> tuple[int, int]:
    """A volume (or the stack ``option`` needs) is one stack of equal sections: (h, w) of its sections, or
    DataError saying why not."""
    if layout != "stack":
        raise DataError(f"{option} needs a stack (IMAGES LABELS [MASKS] as TIFF, .npy or FILE.h5:DATASET), not "
                        f"a {layout} of separate images")
    sizes = {tuple(it.size) for it in items}
    if len(sizes) != 1:
        raise DataError(f"{items[0].group}: sections of different sizes {sorted(sizes)[:3]}; {option} needs "
                        "sections of one size")
    return next(iter(sizes))
