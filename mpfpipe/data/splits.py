"""Train/val/test splits, stratified by "the image contains the positive class"."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import DataError, ValueFormatError
from .layout import SPLIT_NAMES


def parse_split(split) -> tuple[float, float, float] | None:
    """``None``, a ``(train, val[, test])`` sequence of fractions, or a string ``"0.6,0.2,0.2"`` -> 3 fractions.

    With two fractions the test split gets the rest. The fractions must be >= 0, sum to 1, and train > 0.
    """
    if split is None:
        return None
    if isinstance(split, str):
        try:
            split = [float(s) for s in split.replace(":", ",").split(",") if s.strip()]
        except ValueError:
            raise ValueFormatError(f"split {split!r}: expected fractions like '0.6,0.2,0.2' (train,val,test)") from None
    try:
        fr = [float(s) for s in split]
    except (TypeError, ValueError):
        raise ValueFormatError(f"split {split!r}: expected 2 or 3 fractions (train, val[, test])") from None
    if len(fr) == 2:
        fr.append(1.0 - sum(fr))
    if len(fr) != 3:
        raise ValueFormatError(f"split {split!r}: expected 2 or 3 fractions (train, val[, test]), got {len(fr)}")
    if any(not np.isfinite(f) or f < -1e-9 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise ValueFormatError(f"split {split!r}: fractions must be >= 0 and sum to 1")
    if fr[0] <= 0:
        raise ValueFormatError(f"split {split!r}: the train fraction must be > 0")
    fr = [max(0.0, f) for f in fr]
    return (fr[0], fr[1], fr[2])


def _allocate(n: int, fractions: Sequence[float]) -> list[int]:
    """Split n items by fractions (largest remainder); every split with a fraction > 0 gets one when n allows."""
    want = np.asarray(fractions, dtype=float) * n
    counts = np.floor(want).astype(int)
    order = np.argsort(-(want - counts), kind="stable")
    for k in order[: n - counts.sum()]:
        counts[k] += 1
    active = [k for k, f in enumerate(fractions) if f > 0]
    if n >= len(active):
        for k in active:
            if counts[k] == 0:
                donor = max(active, key=lambda j: counts[j])
                counts[donor] -= 1
                counts[k] += 1
    return counts.tolist()


def stratified_split(positive: Sequence[bool], fractions, seed: int = 0) -> dict[str, list[int]]:
    """Image indices of each split. Positives and negatives are shuffled (seeded) and divided separately, so a
    set with few defective images still has some in every split with a non-zero fraction (when it has enough).
    """
    n = len(positive)
    fractions = parse_split(fractions)
    if fractions is None:
        return {"train": list(range(n)), "val": [], "test": []}
    active = sum(f > 0 for f in fractions)
    if n < active:
        raise DataError(f"cannot split {n} image(s) into {active} non-empty splits")
    rng = np.random.default_rng([int(seed), 0x5B117])
    pos = np.asarray(positive, dtype=bool)
    out: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    for stratum in (np.flatnonzero(pos), np.flatnonzero(~pos)):
        stratum = stratum[rng.permutation(len(stratum))]
        start = 0
        for name, count in zip(SPLIT_NAMES, _allocate(len(stratum), fractions)):
            out[name].extend(int(i) for i in stratum[start:start + count])
            start += count
    for name, f in zip(SPLIT_NAMES, fractions):  # tiny strata: still no empty split that was asked for
        if f > 0 and not out[name]:
            donor = max(SPLIT_NAMES, key=lambda s: len(out[s]))
            out[name].append(out[donor].pop())
    return {name: sorted(idx) for name, idx in out.items()}
