"""Values from outside the command line, checked where they enter with a line naming them: environment variables
(every one mpfpipe or its engine reads) and Dask scheduler files.

The CLI calls `check_environment` before any command runs, and the API reads its own variables through
`positive_int`, so ``MPFPIPE_THREADS=abc`` is ``error: environment variable MPFPIPE_THREADS='abc': ...`` (a usage
error, exit 2) instead of ``ValueError: invalid literal for int()`` from inside a worker. Thread counts of the
libraries underneath are checked too: Numba only warns about a bad ``NUMBA_NUM_THREADS`` and OpenMP prints
"Invalid value" and goes on, so the run would silently use another thread count than the user asked for.
"""
from __future__ import annotations

import os

from .errors import ClusterError, UsageError

THREAD_VARIABLES = ("MPFPIPE_THREADS", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "MKL_NUM_THREADS")
FOLDER_VARIABLES = ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")
SWITCH_VARIABLES = ("MPFPIPE_WINOGRAD",)  # 0 or 1 (unset: the default)


class EnvironmentVariableError(UsageError):
    """An environment variable holds a value mpfpipe cannot use."""


def positive_int(name: str) -> int | None:
    """The environment variable ``name`` as an integer >= 1, None when it is unset or empty."""
    text = os.environ.get(name, "").strip()
    return _whole(name, text) if text else None


def _whole(name: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise EnvironmentVariableError(f"environment variable {name}={os.environ[name]!r}: expected a whole number "
                                       f">= 1 (a thread count); unset it or give e.g. {name}=1")
    return value


def folder(name: str) -> str | None:
    """The environment variable ``name`` as a folder path: absent or a folder, never an existing file."""
    text = os.environ.get(name, "")
    if not text:
        return None
    if os.path.exists(text) and not os.path.isdir(text):
        raise EnvironmentVariableError(f"environment variable {name}={text!r}: that is a file, not a folder; "
                                       "unset it or give a folder")
    return text


def check_environment() -> None:
    """Check every variable mpfpipe reads (see the module doc); the first bad one raises."""
    for name in THREAD_VARIABLES:
        if name == "OMP_NUM_THREADS" and "," in os.environ.get(name, ""):  # OpenMP's per-level list: 4,2
            for part in os.environ[name].split(","):
                _whole(name, part)
        else:
            positive_int(name)
    for name in FOLDER_VARIABLES:
        folder(name)
    for name in SWITCH_VARIABLES:
        switch(name)


def switch(name: str) -> bool | None:
    """The environment variable ``name`` as an on/off switch: "1" / "0", None when unset or empty."""
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    if text not in ("0", "1"):
        raise EnvironmentVariableError(f"environment variable {name}={os.environ[name]!r}: expected 0 or 1; unset it "
                                       f"for the default")
    return text == "1"


def check_scheduler_file(path) -> str:
    """``path`` if it is a Dask scheduler file (JSON with an "address" string, as ``dask scheduler
    --scheduler-file`` writes it); else one ClusterError naming the file and what is wrong."""
    import json
    try:
        doc = json.loads(open(path).read())
    except FileNotFoundError:
        raise ClusterError(f"scheduler file {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ClusterError(f"scheduler file {path} cannot be read ({exc})") from None
    except ValueError as exc:
        raise ClusterError(f"scheduler file {path} is not JSON ({exc}); give the file `dask scheduler "
                           "--scheduler-file` wrote") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("address"), str) or "://" not in doc["address"]:
        raise ClusterError(f"scheduler file {path} holds no scheduler address (expected JSON with \"address\": "
                           "\"tcp://host:port\", as `dask scheduler --scheduler-file` writes it)")
    return str(path)
