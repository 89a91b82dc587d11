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
    """(block index, problem) of every done block whose chunks are missing or damaged; [] for outputs written
    before checksums existed (nothing to compare with)."""
    import zarr
    root = zarr.open_group(str(path), mode="r")
    if "checksums" not in root:
        return []
    meta = root.attrs["mpfpipe"]
    sums = np.asarray(root["checksums"][...])
    done = read_done(path)
    probs, labels = root["0"], root["labels"][LABELS_NAME]["0"]
    two_d = labels.ndim == 2
    bad = []
    for b in block_grid(meta["input"]["shape"], meta["block"]):
        if not done[b.index]:
            continue
        zs, ys, xs = slice(*b.z), slice(*b.y), slice(*b.x)
        sel = (ys, xs) if two_d else (zs, ys, xs)
        coords = b.index[1:] if two_d else b.index
        try:
            read_checked(probs, (slice(None), *sel), store=path, array="0", coords=(0, *coords),
                         expected=sums[b.index][0], what=f"block {b.index}")
            read_checked(labels, sel, store=path, array=f"labels/{LABELS_NAME}/0", coords=coords,
                         expected=sums[b.index][1], what=f"block {b.index}")
        except DamagedChunkError as exc:
            bad.append((b.index, str(exc)))
    return bad


def repair(path) -> list[tuple[tuple, str]]:
    """Clear the done markers of damaged blocks (and the complete flag) so that a rerun recomputes them."""
    import zarr
    bad = damaged_blocks(path)
    if bad:
        done = zarr.open_array(str(path), path="done", mode="r+")
        for index, _ in bad:
            done[index] = 0
        set_complete(path, False)
    return bad
