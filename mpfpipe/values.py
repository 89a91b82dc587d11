"""What an option's value may be (`Num`, `Choice`, `Flag`, `Parsed`, `Any`: each converts a value or raises
ValueError, and describes what it expects), and the parsers of values that arrive as text (command line, YAML,
``--set``) or as Python values (the API): split fractions, image sizes, block sizes and durations. They sit below
every package that takes such an option, so the option declarations (`mpfpipe.options`) check them without
reaching up into the data or training layers. Floats must be finite: ``nan`` passes every ``x > 0`` comparison the
wrong way, ``inf`` makes a step size that kills a run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import DataError, TrainingOptionError, ValueFormatError


@dataclass(frozen=True)
class Num:
    """An int or a finite float in [lo, hi] (``lo_open``: > lo); ``optional``: None is allowed."""
    kind: type
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    optional: bool = False

    def describe(self) -> str:
        what = "an integer" if self.kind is int else "a finite number"
        if self.lo is not None and self.hi is not None:
            rng = f" in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}]"
        elif self.lo is not None:
            rng = f" {'>' if self.lo_open else '>='} {self.lo:g}"
        elif self.hi is not None:
            rng = f" <= {self.hi:g}"
        else:
            rng = ""
        return what + rng

    def convert(self, value):
        if value is None and self.optional:
            return None
        if isinstance(value, (bool, np.bool_)) or value is None:
            raise ValueError
        if self.kind is int:
            if isinstance(value, (int, np.integer)):
                v = int(value)
            else:
                raise ValueError
        else:
            if not isinstance(value, (int, float, np.integer, np.floating)):
                raise ValueError
            v = float(value)
            if not math.isfinite(v):
                raise ValueError
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            raise ValueError
        if self.hi is not None and v > self.hi:
            raise ValueError
        return v


@dataclass(frozen=True)
class Choice:
    values: tuple
    optional: bool = False

    def describe(self) -> str:
        return "one of " + ", ".join(map(str, self.values))

    def convert(self, value):
        if value is None and self.optional:
            return None
        if value not in self.values:
            raise ValueError
        return value


@dataclass(frozen=True)
class Parsed:
    """A value checked by the parser that the API itself uses (`mpfpipe.values`), e.g. a split or a size."""
    parser: object  # a function of mpfpipe.values: raises with its own message
    what: str
    optional: bool = True

    def describe(self) -> str:
        return self.what

    def convert(self, value):
        if value is None and self.optional:
            return None
        self.parser(value)
        return value


def Int(lo=None, hi=None, optional=False):  # noqa: N802 - reads as a type in the tables below
    return Num(int, lo, hi, optional=optional)


def Float(lo=None, hi=None, lo_open=False, optional=False):  # noqa: N802
    return Num(float, lo, hi, lo_open, optional)


@dataclass(frozen=True)
class Flag:
    """True or False (None too when ``optional``: "decide for me")."""
    optional: bool = False

    def describe(self) -> str:
        return "true or false"

    def convert(self, value):
        if value is None and self.optional:
            return None
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError
        return bool(value)


@dataclass(frozen=True)
class Any:
    """A value the API itself interprets (a path, a preset name or a net, a callable...): not checked here."""
    what: str = "a value"
    optional: bool = True

    def describe(self) -> str:
        return self.what

    def convert(self, value):
        return value


def parse_block(block) -> tuple[int, int, int]:
    """``"1,512,512"``, ``"512x512"`` (Y, X: one slice deep) or a sequence -> positive (z, y, x) block sizes."""
    parts = [str(v) for v in block] if isinstance(block, (list, tuple)) else str(block).replace("x", ",").split(",")
    try:
        sizes = tuple(int(p) for p in parts if p.strip())
    except ValueError:
        raise DataError(f"block {block!r}: give Z,Y,X block sizes, e.g. 1,512,512") from None
    if len(sizes) == 2:
        sizes = (1, *sizes)
    if len(sizes) != 3 or min(sizes) < 1:
        raise DataError(f"block {block!r}: give Z,Y,X (or Y,X) positive block sizes")
    return sizes


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
            raise TrainingOptionError(f"max_time: {value!r} is not a duration (e.g. 7200, 90m, 2h)") from None
    if not seconds > 0:
        raise TrainingOptionError(f"max_time: {value!r} must be positive")
    return seconds


def parse_indices(spec, what: str = "image index list") -> list[int]:
    """``"0-9,12"`` (indices and inclusive ranges), an int or a sequence of ints -> the list of indices."""
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        return [int(spec)]
    if isinstance(spec, str):
        out = []
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                if "-" in part:
                    a, b = part.split("-", 1)
                    out.extend(range(int(a), int(b) + 1))
                else:
                    out.append(int(part))
            except ValueError:
                raise ValueFormatError(f"bad {what} {spec!r}: use indices and ranges such as 0-9,12") from None
        return out
    try:
        return [int(i) for i in spec]
    except (TypeError, ValueError):
        raise ValueFormatError(f"bad {what} {spec!r}: use indices and ranges such as 0-9,12") from None


SECTION_SPLITS = ("train", "val", "test")


def parse_sections(spec) -> dict[str, list[int]] | None:
    """A volume's z sections per split: ``"train=0-11,val=12-15,test=16-19"`` (a split's list runs until the next
    ``name=``, so ``"train=0-1,4-8,val=3"`` works) or a mapping ``{train: "0-11", val: [12, 13]}``; None stays None.
    Splits not named are empty; a section in two splits is an error."""
    if spec is None:
        return None
    if isinstance(spec, str):
        parts: dict[str, list[str]] = {}
        current = None
        for token in spec.split(","):
            token = token.strip()
            if "=" in token:
                current, token = (s.strip() for s in token.split("=", 1))
                if current in parts:
                    raise ValueFormatError(f"sections {spec!r}: split {current!r} named twice")
                parts[current] = []
            if current is None:
                raise ValueFormatError(f"sections {spec!r}: start with a split name, e.g. train=0-11,val=12-15")
            if token:
                parts[current].append(token)
        spec = {k: ",".join(v) for k, v in parts.items()}
    if not isinstance(spec, dict):
        raise ValueFormatError(f"sections {spec!r}: expected 'train=0-11,val=12-15,test=16-19' or a mapping")
    out = {name: [] for name in SECTION_SPLITS}
    seen: dict[int, str] = {}
    for name, value in spec.items():
        if name not in SECTION_SPLITS:
            raise ValueFormatError(f"sections: unknown split {name!r} (splits: {', '.join(SECTION_SPLITS)})")
        idx = parse_indices(value, f"section list of {name}")
        for z in idx:
            if z < 0:
                raise ValueFormatError(f"sections: {name} lists the negative section {z}")
            if z in seen:
                raise ValueFormatError(f"sections: section {z} is in both {seen[z]} and {name}")
            seen[z] = name
        out[name] = sorted(idx)
    if not out["train"]:
        raise ValueFormatError(f"sections {spec!r}: the train split has no section")
    return out


# OME-NGFF 0.5's space units (axes "unit"), the names a voxel size may be given in
SPACE_UNITS = ("angstrom", "attometer", "centimeter", "decimeter", "exameter", "femtometer", "foot", "gigameter",
               "hectometer", "inch", "kilometer", "megameter", "meter", "micrometer", "mile", "millimeter",
               "nanometer", "parsec", "petameter", "picometer", "terameter", "yard", "yoctometer", "yottameter",
               "zeptometer", "zettameter")


def parse_voxel_size(value) -> tuple[float, float, float] | None:
    """``"50,4,4"`` or a sequence: the (z, y, x) voxel size, positive and finite; None stays None."""
    if value is None:
        return None
    parts = str(value).replace("x", ",").split(",") if isinstance(value, str) else value
    try:
        sizes = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        raise ValueFormatError(f"voxel size {value!r}: give Z,Y,X sizes, e.g. 50,4,4") from None
    if len(sizes) != 3 or not all(math.isfinite(s) and s > 0 for s in sizes):
        raise ValueFormatError(f"voxel size {value!r}: give three positive Z,Y,X sizes, e.g. 50,4,4")
    return sizes


def parse_merge_classifier(value):
    """A learned merge score's classifier record (`mpfpipe.data.merge_learn.fit`): a logistic regression, with
    centre, scale (> 0) and coef finite and one per feature, and a finite bias; refused with one line when
    malformed. (Its feature names are checked against the merging code's where it is used,
    `data.agglomerate.classifier_array`: the data layer is above this one.)"""
    try:
        n = len(list(value["features"]))
        rows = [np.asarray(value[k], np.float64) for k in ("centre", "scale", "coef")]
        ok = (value.get("kind") == "logistic" and all(r.shape == (n,) and np.isfinite(r).all() for r in rows)
              and bool((rows[1] > 0).all()) and math.isfinite(float(value["bias"])))
    except (AttributeError, KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueFormatError("merge_classifier is not a logistic regression (kind 'logistic'; centre, scale > 0 "
                               "and coef finite, one per feature; a finite bias): refit it with `mpfpipe evaluate "
                               "--tune-instances`")
    return value
