"""Checking a segmentation output's blocks against the checksums their tasks recorded (see `mpfpipe._integrity`).

A block counts as done only while its chunks read back with the CRC-32 written before its done marker: a chunk
that was deleted, truncated or changed afterwards is found by `damaged_blocks`, and `repair` clears those
blocks' markers (and ``complete``) so that `segment` recomputes exactly them on its next run.
"""
from __future__ import annotations

import numpy as np

from .._integrity import DamagedChunkError, read_checked
from .blocks import block_grid
from .omezarr import LABELS_NAME, read_done, set_complete


def damaged_blocks(path) -> list[tuple[tuple, str]]:
    """(block index, problem) of every done level-0 block whose chunks are missing or damaged; [] for outputs
    written before checksums existed (nothing to compare with). See `damaged_level_blocks` for every level."""
    return [(index, problem) for lv, index, problem in damaged_level_blocks(path) if lv == 0]


def damaged_level_blocks(path) -> list[tuple[int, tuple, str]]:
    """(level, block index, problem) of every done block of every pyramid level whose chunks are missing or
    damaged (levels without checksums, from older outputs, are not checked)."""
    import zarr

    from .omezarr import checksums_name
    from .pyramid import level_blocks
    root = zarr.open_group(str(path), mode="r")
    meta = root.attrs["mpfpipe"]
    bad = []
    lv = 0
    while checksums_name(lv) in root and str(lv) in root:
        sums = np.asarray(root[checksums_name(lv)][...])
        done = read_done(path, lv)
        probs, labels = root[str(lv)], root["labels"][LABELS_NAME][str(lv)]
        two_d = labels.ndim == 2
        blocks = block_grid(meta["input"]["shape"], meta["block"]) if lv == 0 else \
            level_blocks(meta["input"]["shape"], meta["block"], lv, tuple(meta.get("z_levels", ())))
        for b in blocks:
            if not done[b.index]:
                continue
            zs, ys, xs = slice(*b.z), slice(*b.y), slice(*b.x)
            sel = (ys, xs) if two_d else (zs, ys, xs)
            coords = b.index[1:] if two_d else b.index
            try:
                read_checked(probs, (slice(None), *sel), store=path, array=str(lv), coords=(0, *coords),
                             expected=sums[b.index][0], what=f"level {lv} block {b.index}")
                read_checked(labels, sel, store=path, array=f"labels/{LABELS_NAME}/{lv}", coords=coords,
                             expected=sums[b.index][1], what=f"level {lv} block {b.index}")
            except DamagedChunkError as exc:
                bad.append((lv, b.index, str(exc)))
        lv += 1
    return bad


def repair(path) -> list[tuple[int, tuple, str]]:
    """Clear the done markers of damaged blocks of every level (and the complete flag) so that a rerun
    recomputes them."""
    import zarr

    from .omezarr import done_name
    bad = damaged_level_blocks(path)
    if bad:
        for lv, index, _ in bad:
            zarr.open_array(str(path), path=done_name(lv), mode="r+")[index] = 0
        set_complete(path, False)
    return bad
