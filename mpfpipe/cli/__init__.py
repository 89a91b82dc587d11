"""The ``mpfpipe`` command line: a thin layer over the Python API.

Exit codes: 0 success, 1 a runtime error (one clear message on stderr; the traceback only with ``--debug``),
2 a usage error (click's own). Every command takes ``--config FILE``: a YAML mapping of option names (with
dashes or underscores) to values, used as defaults that explicit command-line options override.
"""
from __future__ import annotations

import sys
import traceback

import click

from .. import __version__
from ..errors import MpfError
from ._common import CONTEXT_SETTINGS


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="mpfpipe")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx, debug):
    """Train max-pooling CNNs on whole images in one pass (MPF) and segment whole volumes, on Dask clusters."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _register():
    # Each command lives in its own module; importing it attaches it to the group.
    import importlib
    for name in ("bench", "ingest", "train", "segment", "evaluate", "export", "info", "run"):
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise


_register()


def main(argv=None):
    if argv is None:
        from .._runtime import reexec_with_tuned_malloc
        reexec_with_tuned_malloc(sys.argv[1:])
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        cli.main(args=argv, prog_name="mpfpipe", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except MpfError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - last resort: one line unless --debug
        if debug:
            traceback.print_exc()
        click.echo(f"error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", err=True)
        sys.exit(1)
    sys.exit(0)
