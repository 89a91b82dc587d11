"""How an option is declared (`Option`), and the vocabularies more than one option shares."""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..values import Any

OPTIMIZERS = ("gd", "lbfgs", "sgd", "adam")  # full-batch GD (Armijo), L-BFGS, mini-batch SGD (Armijo), Adam
DTYPES = ("float32", "float64")              # the fragment engine's arithmetic (reductions are float64)


@dataclass(frozen=True)
class Option:
    """One option: ``value`` (what it may be: `mpfpipe.values`), ``default`` (the API's and the CLI's), ``help``
    (the CLI's text), ``flag`` (the CLI's flag(s): None = ``--name-with-dashes``, "" = not on the CLI, or e.g.
    ``"--balance/--no-balance"``), ``api`` (a parameter of the API function; False: the CLI's own, e.g. --json),
    ``workflow`` (a workflow step may set it; False: the run decides: outputs, cluster, progress), ``cli``: more
    click settings as pairs (``type``: "file" / "dir" / "existing-dir"; ``required``, ``multiple``, ``metavar``,
    ``show_default``)."""
    value: object
    default: object = None
    help: str = ""
    flag: str | None = None
    api: bool = True
    workflow: bool = True
    cli: tuple = ()

    def describe(self) -> str:
        return self.value.describe()

    def convert(self, value):
        return self.value.convert(value)


def _opts(**kw) -> dict:
    return kw


def cli_only(option: Option) -> Option:
    """An option of a command, not of an API function nor of a workflow step."""
    return replace(option, api=False, workflow=False)


_LOCAL = "Local cluster: "
_FILE = (("type", "file"),)
_SCHEDULER = Option(Any("an address or a scheduler file"), None, "Join a running Dask scheduler: its address "
                    "(tcp://host:8786) or its scheduler file (--scheduler-file is an alias).",
                    flag="--scheduler --scheduler-file", workflow=False, cli=(("metavar", "ADDRESS|FILE"),))
