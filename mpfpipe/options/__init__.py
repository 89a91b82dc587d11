"""Every option of the API and the command line, declared once: its type and range, default, help and flag.

``OPTIONS[kind][name]`` is an `Option`. The same declaration is

- checked by the API functions (``check(kind, values)`` at their start; their signatures keep the declared
  defaults, and tests/test_options.py asserts that they are equal);
- checked by the workflow planner before any step runs (`mpfpipe.workflow.spec.plan`, so ``epochs: "abc"`` or
  ``--set n_images=abc`` fail at ``--dry-run``), which also takes the options a step may set from here;
- the CLI's option: `cli_options` makes the click options of a command from the declarations (flag, type,
  default, help), so click, the API and workflows can never disagree. A test walks every command and fails on an
  option that is not declared, or whose default or help differs.

The value types and parsers are `mpfpipe.values`; how an option is declared, `declare`; the API functions'
options are in `api`, the other commands' in `commands`.
"""
from __future__ import annotations

from ..errors import MpfError, OptionError
from ..values import Choice, Flag
from . import api, commands
from .declare import DTYPES, OPTIMIZERS, Option  # noqa: F401 - the names the other modules import from here

OPTIONS: dict[str, dict] = {**api.TABLES, **commands.TABLES}


def api_options(kind: str) -> dict:
    """name -> default of the options of ``kind`` that a workflow step may set."""
    return {n: d.default for n, d in OPTIONS[kind].items() if isinstance(d, Option) and d.api and d.workflow}


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
    spec = getattr(spec, "value", spec)

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


_PATH_TYPES = {"file": {"dir_okay": False}, "dir": {"file_okay": False},
               "existing-dir": {"file_okay": False, "exists": True},
               "existing-file": {"dir_okay": False, "exists": True}}


def cli_default(decl: Option):
    """The default as the command line has it: a tuple (a block size) as its comma-separated text."""
    if isinstance(decl.default, tuple) and not dict(decl.cli).get("multiple"):
        return ",".join(str(v) for v in decl.default)
    return decl.default


def cli_flags(kind: str, name: str) -> list[str]:
    decl = OPTIONS[kind][name]
    return decl.flag.split() if decl.flag else ["--" + name.replace("_", "-")]


def click_option(kind: str, name: str, **extra):
    """The click option of ``name`` of ``kind``, made from its declaration (``extra``: e.g. a callback)."""
    import click
    decl = OPTIONS[kind][name]
    kw = {"default": cli_default(decl), "help": decl.help, **dict(decl.cli), **extra}
    if isinstance(kw.get("type"), str):
        kw["type"] = click.Path(**_PATH_TYPES[kw["type"]])
    spec = decl.value
    if isinstance(spec, Flag) or (isinstance(spec, Choice) and spec.values == (False, True)):
        if "/" not in (decl.flag or ""):  # --x/--no-x is a boolean pair of its own
            kw["is_flag"] = True
    elif isinstance(spec, Choice):
        kw.setdefault("type", click.Choice(list(spec.values)))
    elif getattr(spec, "kind", None) in (int, float):
        kw.setdefault("type", click_type(kind, name))
    return click.option(*cli_flags(kind, name), name, **kw)


def cli_options(kind: str, **extra):
    """Decorator: every option of ``kind`` that has a CLI flag, in declaration order (``extra``: name -> more
    click settings, e.g. a callback that parses the text)."""
    names = [n for n, d in OPTIONS[kind].items() if isinstance(d, Option) and d.flag != ""]

    def decorate(f):
        for name in reversed(names):
            f = click_option(kind, name, **extra.get(name, {}))(f)
        return f
    return decorate
