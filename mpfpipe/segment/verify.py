"""Checking a segmentation output's blocks against the checksums their tasks recorded (see `mpfpipe._integrity`).

A block counts as done only while its chunks read back with the CRC-32 written before its done marker: a chunk
that was deleted, truncated or changed afterwards is found by `damaged_blocks`, and `repair` clears those
blocks' markers (and ``complete``) so that `segment` recomputes exactly them on its next run.

The instance labels (``labels/instances``, `instance_store`) are checked the same way, block by block and level
by level (`damaged_instance_blocks`). `repair_instances` clears the damaged blocks' markers and the labels'
``complete``, and the instance step (rerun with the same command) redoes them: a pyramid block from the level
below, a level-0 block by relabelling it with the mapping of its first two passes, which it computes again when
their work was already removed (the same input and parameters give the same ids, so the block gets back exactly
the ids it had).
"""
from __future__ import annotations

import numpy as np

from .._integrity import DamagedChunkError, damaged_chunks, read_checked
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


def damaged_instance_blocks(path) -> list[tuple[int, tuple, str]]:
    """(level, block index, problem) of every done block of ``labels/instances`` whose chunk is missing or
    damaged; [] when the output has no instance labels."""
    import zarr

    from . import instance_store as store
    root = zarr.open_group(str(path), mode="r")
    if "labels" not in root or store.NAME not in root["labels"]:
        return []
    labels = root["labels"][store.NAME]
    bad, lv = [], 0
    while store.checksums_name(lv) in root and str(lv) in labels:
        sums, done = root[store.checksums_name(lv)][...], store.read_done(path, store.done_name(lv))
        bad += [(lv, index, problem) for index, problem in damaged_chunks(
            labels[str(lv)], sums, done, store=path, array=f"labels/{store.NAME}/{lv}", what=f"level {lv} block")]
        lv += 1
    return bad


def repair_instances(path) -> list[tuple[int, tuple, str]]:
    """Clear the done markers of the damaged blocks of ``labels/instances`` (and its complete flag), so that the
    instance step redoes them when it runs again; returns them."""
    import zarr

    from . import instance_store as store
    bad = damaged_instance_blocks(path)
    for lv, index, _ in bad:
        zarr.open_array(str(path), path=store.done_name(lv), mode="r+")[index] = 0
    if bad:
        store.set_labels_complete(path, False)
    return bad


def damaged_outputs(path) -> list[str]:
    """Every problem of a segmentation output: its blocks (`damaged_level_blocks`) and its instance labels."""
    return [p for _, _, p in damaged_level_blocks(path)] + [p for _, _, p in damaged_instance_blocks(path)]
