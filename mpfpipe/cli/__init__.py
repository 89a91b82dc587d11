"""The ``mpfpipe`` command line: a thin layer over the Python API.

Exit codes: 0 success, 1 a runtime error (one clear message on stderr; the traceback only with ``--debug``),
2 a usage error (click's own), 130 / 143 stopped by SIGINT (Ctrl-C) / SIGTERM. SIGTERM, what ``scancel``, a SLURM
time limit and Kubernetes send, takes the Ctrl-C path: the run stops cleanly and says how to resume.

Every command takes ``--config FILE``: a YAML mapping of option names (with dashes or underscores) to values, used
as defaults that explicit command-line options override.
"""
from __future__ import annotations

import signal
import sys
import threading
import traceback

import click

from .. import __version__, _stop
from ..errors import Interrupted, MpfError, UsageError
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
    for name in ("bench", "ingest", "train", "segment", "evaluate", "export", "info", "run", "warmup"):
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise


_register()


_stopped_by = [signal.SIGINT]


def _on_signal(signum, frame):
    # once: a second signal (or the SIGKILL after SLURM's KillWait) takes Python's default path
    _stopped_by[0] = signum
    _stop.request()  # seen by the loops even if the KeyboardInterrupt lands in a finaliser and is dropped
    signal.signal(signum, signal.SIG_DFL if signum == signal.SIGTERM else signal.default_int_handler)
    raise KeyboardInterrupt


def _unraisable(info):
    # the handler's KeyboardInterrupt landed in a finaliser, which drops it: the stop flag carries it on to the
    # next step, so it is not an error to print
    if info.exc_type is KeyboardInterrupt and _stop.requested():
        return
    sys.__unraisablehook__(info)


def _code() -> int:
    return 128 + int(_stopped_by[0])


def main(argv=None):
    if argv is None:  # the command itself, not main() called inside a caller's process
        if threading.current_thread() is threading.main_thread():
            sys.unraisablehook = _unraisable
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler):  # not if ignored (nohup)
                    signal.signal(sig, _on_signal)
        from .._runtime import reexec_with_tuned_malloc
        reexec_with_tuned_malloc(sys.argv[1:])
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    if not debug:  # Dask's cancelled futures on Ctrl-C ("Task exception was never retrieved"): not the user's
        import logging
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    try:
        from .._env import check_environment
        if not {"--help", "-h", "--version"} & set(sys.argv[1:] if argv is None else argv):
            check_environment()  # before anything reads a variable: one line naming a bad one
        cli.main(args=argv, prog_name="mpfpipe", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(_code())
    except click.exceptions.UsageError as exc:  # click's usage block, folded into the one line every error gets
        cmd = exc.ctx.command_path if exc.ctx is not None else "mpfpipe"
        click.echo(f"error: {_one_line(exc.format_message())} (see '{cmd} --help')", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"error: {_one_line(exc.format_message())}", err=True)
        sys.exit(exc.exit_code)
    except Interrupted as exc:
        click.echo(f"interrupted: {exc}", err=True)
        sys.exit(_code())
    except MpfError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"error: {_one_line(exc)}", err=True)
        sys.exit(2 if isinstance(exc, UsageError) else 1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(_code())
    except OSError as exc:  # a full disk, a read-only folder...: say where, the OS error often does not
        if debug:
            traceback.print_exc()
        where = exc.filename or ", ".join(_outputs(sys.argv[1:] if argv is None else argv)) or None
        click.echo(f"error: {exc.strerror or exc}" + (f" (writing {where})" if where and not exc.filename else
                                                       f": {where}" if where else "")
                   + " (run with --debug for the traceback)", err=True)
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - last resort: one line unless --debug
        if debug:
            traceback.print_exc()
        click.echo(f"error: {_unexpected(exc, sys.argv[1:] if argv is None else argv)}", err=True)
        sys.exit(1)
    sys.exit(0)


def _one_line(exc) -> str:
    """The message of ``exc`` on one line (a message holding newlines, e.g. a wrapped library error, folded)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _unexpected(exc, argv) -> str:
    """The line for an exception no layer turned into an MpfError: what was being done (the command and its
    files), then what Python said, and that it is mpfpipe's fault."""
    name, files = _command_files(argv)
    what = f"mpfpipe {name}" + (f" on {', '.join(files)}" if files else "") if name else "mpfpipe"
    detail = _one_line(exc)
    said = f"{type(exc).__name__} ({detail})" if detail != type(exc).__name__ else type(exc).__name__
    return (f"{what} stopped on an unexpected internal error, {said}; this is a bug in mpfpipe, not in the "
            "input (run with --debug for the traceback and report it)")


def _parsed(argv):
    """(command name, its parameters) of the command line ``argv``, parsed again without running anything."""
    import warnings
    try:
        ctx = cli.make_context("mpfpipe", list(argv), resilient_parsing=True)
        with warnings.catch_warnings():  # click 8.2 deprecates protected_args (then empty), 8.1 needs it
            warnings.simplefilter("ignore", DeprecationWarning)
            name, *rest = ctx.protected_args + ctx.args
        cmd = cli.get_command(ctx, name)
        sub = cmd.make_context(name, rest, parent=ctx, resilient_parsing=True)
    except Exception:  # noqa: BLE001 - best effort, for a message only
        return None, {}
    return name, sub.params


def _outputs(argv) -> list[str]:
    """The output paths of the command line ``argv``."""
    params = _parsed(argv)[1]
    return [str(params[k]) for k in ("output", "out") if params.get(k)]


def _command_files(argv) -> tuple[str | None, list[str]]:
    """The command of ``argv`` and the files it names (its arguments and options that are existing paths, and its
    output)."""
    import os
    name, params = _parsed(argv)
    files = []
    for key, val in params.items():
        for v in val if isinstance(val, (list, tuple)) else [val]:
            if isinstance(v, str) and v and (os.path.exists(v.split(":")[0]) or key in ("output", "out")):
                files.append(v)
    return name, list(dict.fromkeys(files))
