"""Parsers of option values that arrive as text (command line, YAML, ``--set``) or as Python values (the API):
split fractions, image sizes and durations. They sit below every package that takes such an option, so the option
declarations (`mpfpipe.options`) check them without reaching up into the data or training layers."""
from __future__ import annotations

import numpy as np

from .errors import DataError, TrainingError


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
            raise DataError(f"split {split!r}: expected fractions like '0.6,0.2,0.2' (train,val,test)") from None
    try:
        fr = [float(s) for s in split]
    except (TypeError, ValueError):
        raise DataError(f"split {split!r}: expected 2 or 3 fractions (train, val[, test])") from None
    if len(fr) == 2:
        fr.append(1.0 - sum(fr))
    if len(fr) != 3:
        raise DataError(f"split {split!r}: expected 2 or 3 fractions (train, val[, test]), got {len(fr)}")
    if any(not np.isfinite(f) or f < -1e-9 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise DataError(f"split {split!r}: fractions must be >= 0 and sum to 1")
    if fr[0] <= 0:
        raise DataError(f"split {split!r}: the train fraction must be > 0")
    fr = [max(0.0, f) for f in fr]
    return (fr[0], fr[1], fr[2])


def parse_size(size) -> tuple[int, int]:
    """``256``, ``(256, 320)`` or ``"256x320"`` -> (h, w)."""
    try:
        if isinstance(size, str):
            parts = [int(s) for s in size.lower().replace("*", "x").split("x")]
        elif isinstance(size, (int, np.integer)):
            parts = [int(size)]
        else:
            parts = [int(s) for s in size]
    except (TypeError, ValueError):
        raise DataError(f"size {size!r}: expected HxW like 256x256") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 16 or max(parts) > 8192:
        raise DataError(f"size {size!r}: expected HxW with 16 <= H, W <= 8192")
    return parts[0], parts[1]


def parse_duration(value) -> float | None:
    """Seconds from a number or a string with a unit: "7200", "7200s", "90m", "2h", "1.5h"; None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        scale = {"s": 1.0, "m": 60.0, "h": 3600.0}.get(text[-1:], None)
        try:
            seconds = float(text[:-1] if scale else text) * (scale or 1.0)
        except ValueError:
            raise TrainingError(f"max_time: {value!r} is not a duration (e.g. 7200, 90m, 2h)") from None
    if not seconds > 0:
        raise TrainingError(f"max_time: {value!r} must be positive")
    return seconds
