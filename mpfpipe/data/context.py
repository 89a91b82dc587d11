"""Section context (2.5-D input): a 2D net sees the ``k`` sections above and below each section as extra input maps.

Serial-section EM is anisotropic (ISBI 2012: 50 nm sections of 4 nm pixels): a membrane that is faint in one
section is often clear in its neighbours, which is what the 3D peers (ELEKTRONN, pytorch_connectomics) exploit.
A full 3D net costs far more per step; here only conv1 reads more maps. Section z's input is the stack of sections
``z - k, ..., z, ..., z + k`` (each with its C channels, so ``C * (2k + 1)`` maps, section-major), mirrored at the
ends of the stack including the edge section (numpy's ``symmetric``: for k = 1 the first section reads sections
0, 0, 1), the padding rule the fragment pass uses at an image's borders (`mpfpipe.arch.PAD_MODE`).

``ingest --section-context K`` stores the stacked maps in the dataset (a training set is small), and the model
records K (`mpfpipe.model.Model.section_context`), so ``segment`` stacks the sections of a plain (Z, Y, X) input
itself, block by block, with the same rule. Both go through `section_indices`.
"""
from __future__ import annotations

import numpy as np

from ..errors import DataError

CONTEXT_KEY = "section_context"  # dataset attribute: {"sections": K, "channels": C of one section}


def section_indices(z: int, k: int, n: int) -> list[int]:
    """The sections whose maps make section ``z``'s input in a stack of ``n``: ``z - k .. z + k``, mirrored at the
    ends with the edge section repeated (numpy ``symmetric``: sections -1, -2 are 0, 1, and n is n - 1)."""
    if not 0 <= z < n:
        raise DataError(f"section {z} is outside a stack of {n}")
    out = []
    for j in range(z - k, z + k + 1):
        j %= 2 * n  # symmetric padding repeats with period 2n; Python's modulo is non-negative
        out.append(j if j < n else 2 * n - 1 - j)
    return out


def stack_sections(read, z0: int, z1: int, k: int, n: int) -> np.ndarray:
    """Sections ``z0 .. z1 - 1`` with their context, (z1 - z0, C * (2k + 1), ...): ``read(a, b)`` returns the raw
    sections a .. b - 1 as (b - a, C, ...); each needed section is read once."""
    if k == 0:
        return read(z0, z1)
    need = [section_indices(z, k, n) for z in range(z0, z1)]
    lo, hi = min(min(s) for s in need), max(max(s) for s in need) + 1
    raw = read(lo, hi)
    return np.stack([np.concatenate([raw[j - lo] for j in s], axis=0) for s in need])


def centre_channel(attrs: dict | None) -> int:
    """The first channel of the section itself in an image of a dataset whose attributes (or a `Volume`'s
    ``info["dataset"]``) are ``attrs``: 0 without section context, K * C with it (its maps come after the K
    sections above)."""
    ctx = (attrs or {}).get(CONTEXT_KEY) or {}
    return int(ctx.get("sections", 0)) * int(ctx.get("channels", 1))


def map_names(k: int, in_channels: int) -> list[str]:
    """Names of a net's ``in_channels`` input maps with section context ``k``: ``c0, c1, ...`` without it."""
    if not k:
        return [f"c{i}" for i in range(in_channels)]
    return channel_names(k, in_channels // (2 * k + 1))


def channel_names(k: int, channels: int) -> list[str]:
    """Names of a context model's input maps, section-major: k = 1, one channel -> ``z_minus_1, z, z_plus_1``.

    Python identifiers, because bioimage.io's model format (spec 0.5.4) requires them for channel names.
    """
    names = []
    for d in range(-k, k + 1):
        z = "z" if d == 0 else f"z_{'minus' if d < 0 else 'plus'}_{abs(d)}"
        names += [z] if channels == 1 else [f"{z}_c{c}" for c in range(channels)]
    return names
