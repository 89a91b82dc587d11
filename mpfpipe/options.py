"""Every numeric and enumerated option of the Python API, declared once: type, range and meaning.

The same declaration is checked by the API functions (``check(kind, values)`` at their start), by the workflow
planner before any step runs (`mpfpipe.workflow.spec.plan`, so ``epochs: "abc"`` or ``--set n_images=abc`` fail
at ``--dry-run``), and by the CLI (`click_type`), so click, the API and workflows can never disagree. Floats must
be finite: ``nan`` passes every ``x > 0`` comparison the wrong way, ``inf`` makes a step size that kills a run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import MpfError


class OptionError(MpfError, ValueError):
    """An option value has the wrong type or lies outside its range."""


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
        import numpy as np
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
    """A value checked by the parser that the API itself uses (``module:function``), e.g. a split or a size."""
    parser: str
    what: str
    optional: bool = True

    def describe(self) -> str:
        return self.what

    def convert(self, value):
        import importlib
        if value is None and self.optional:
            return None
        mod, fn = self.parser.split(":")
        getattr(importlib.import_module(mod), fn)(value)  # raises with its own message
        return value


def Int(lo=None, hi=None, optional=False):  # noqa: N802 - reads as a type in the tables below
    return Num(int, lo, hi, optional=optional)


def Float(lo=None, hi=None, lo_open=False, optional=False):  # noqa: N802
    return Num(float, lo, hi, lo_open, optional)


_SPLIT = Parsed("mpfpipe.data.splits:parse_split", "train,val[,test] fractions")
_COMMON_CLUSTER = {"workers": Int(1, optional=True), "threads": Int(1, optional=True)}
_INSTANCES = {"threshold": Float(0, 1), "seed_distance": Int(1), "merge_threshold": Float(0, 1), "min_size": Int(1),
              "link_slices": Choice((False, True)), "link_overlap": Float(0, 1), "margin": Int(1)}
OPTIONS: dict[str, dict] = {
    "ingest": {"positive": Int(optional=True), "mask_threshold": Int(0, 65534), "downsample": Int(1),
               "seed": Int(), "split": _SPLIT},
    "synthetic": {"n_images": Int(1), "seed": Int(), "defect_fraction": Float(0, 1),
                  "cell_size": Float(0, lo_open=True),
                  "size": Parsed("mpfpipe.data.synth:parse_size", "a size HxW", optional=False), "split": _SPLIT},
    "train": {"epochs": Int(0), "batch_size": Int(1), "lr": Float(0, lo_open=True, optional=True),
              "lr_halflife": Float(0), "memory": Int(1), "seed": Int(), "gtol": Float(0), "validate_every": Int(1),
              "max_steps": Int(1, optional=True), "maps": Int(1, optional=True), "hidden": Int(1, optional=True),
              "timeout": Float(0, lo_open=True), "optimizer": Choice(("gd", "lbfgs", "sgd", "adam")),
              "dtype": Choice(("float32", "float64")), "chunk_seconds": Float(0, lo_open=True),
              "reproducible": Choice((False, True)),
              "max_time": Parsed("mpfpipe.train.driver:parse_duration", "a duration such as 7200, 90m or 2h"),
              **_COMMON_CLUSTER},
    "segment": {"threshold": Float(0, 1, optional=True), "positive": Int(0), "workers": Int(0, optional=True),
                "levels": Int(1, optional=True),
                "threads": Int(1, optional=True), "dtype": Choice(("float32", "float64")),
                "tta": Choice((False, True)), "detect_threshold": Float(0, optional=True),
                **{f"instance_{k}": Num(v.kind, v.lo, v.hi, v.lo_open, optional=True)
                   for k, v in _INSTANCES.items() if isinstance(v, Num)}},
    # the instance step (`segment.instances`): as its API names them, and as `segment --instances` options
    "instances": {**_INSTANCES, "workers": Int(0, optional=True), "threads": Int(1, optional=True)},
    "bench": {"task_seconds": Float(0, lo_open=True), "images": Int(1), "repeat": Int(1),
              "chunk_seconds": Float(0, lo_open=True), **_COMMON_CLUSTER},
    "evaluate": {"threshold": Float(0, 1), "samples": Int(1), "seed": Int(), "overlays": Int(0), "positive": Int(0),
                 "truth_positive": Int(optional=True), "ignore_index": Int(0, 255),
                 "tune_instances": Choice((False, True))},
}


def check(kind: str, values: dict, where: str = "") -> dict:
    """Check (and normalise: numpy ints become ints) every declared option of ``kind`` present in ``values``;
    returns the checked values. Raises OptionError naming the option, the value and what is expected."""
    decl = OPTIONS[kind]
    out = {}
    for name, value in values.items():
        spec = decl.get(name)
        if spec is None:
            continue
        try:
            out[name] = spec.convert(value)
        except MpfError as exc:  # a parser's own error (it names the value): as is from the API
            if not where:
                raise
            raise OptionError(f"{where}{name}: {exc}") from None
        except (ValueError, TypeError, OverflowError):
            raise OptionError(f"{where}{name} = {value!r}: expected {spec.describe()}") from None
    return out


def click_type(kind: str, name: str):
    """A click parameter type for option ``name`` of ``kind``: the text is read as the declared type and checked
    against the same declaration (a bad value is a usage error, exit 2)."""
    import click
    spec = OPTIONS[kind][name]

    class _Declared(click.ParamType):
        def __init__(self):
            self.name = "integer" if getattr(spec, "kind", None) is int else "float"

        def convert(self, value, param, ctx):
            if isinstance(value, str):
                try:
                    value = int(value) if self.name == "integer" else float(value)
                except ValueError:
                    self.fail(f"{value!r}: expected {spec.describe()}", param, ctx)
            try:
                return spec.convert(value)
            except (ValueError, TypeError):
                self.fail(f"{value!r}: expected {spec.describe()}", param, ctx)

    return _Declared()
