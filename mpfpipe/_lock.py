"""One writer per output: a lock file beside the output that names its holder.

Two runs writing one output mix it (a second ``segment --overwrite`` started during a first one produced an
output marked complete for model B holding blocks of model A). Every command that writes an output (a dataset
being ingested, a segmentation, a training run's model and checkpoint, a workflow's run folder) holds
``.NAME.lock`` beside it while it runs; a second writer refuses with one line naming the holder. The lock sits
beside the output, not inside it, so replacing the output never removes it, and it exists before the output
does.

A crashed holder must not block the output forever: its lock is taken over when the holder's process is gone
(same host: the pid no longer runs, or runs a different process, told apart by its start time), or when the
lock has not been refreshed for `STALE_SECONDS` (another host: the holder touches the file every
`HEARTBEAT_SECONDS`). Taking over is itself atomic: the stale file is renamed away first, so of two processes
that both see a stale lock only one removes it.
"""
from __future__ import annotations

import functools
import inspect
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from .errors import MpfError

HEARTBEAT_SECONDS = 30.0
STALE_SECONDS = 300.0


class LockedError(MpfError):
    """Another process is writing this output."""


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux /proc), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2:].split()[19]
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    now = _start_time(pid)
    return start is None or now is None or now == start


def lock_path(output) -> Path:
    p = Path(os.path.abspath(Path(output).expanduser()))
    return p.parent / f".{p.name}.lock"


class WriterLock:
    def __init__(self, output, what: str = "output"):
        self.output, self.what = Path(output), what
        self.path = lock_path(output)
        self.me = {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": _start_time(os.getpid()),
                   "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "token": uuid.uuid4().hex}
        self._stop = threading.Event()
        self._beat = None

    def _holder(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # being written this instant, or garbage: judged by its age

    def _stale(self, holder: dict) -> bool:
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return True
        if holder.get("host") == self.me["host"] and isinstance(holder.get("pid"), int):
            return not _alive(holder["pid"], holder.get("pid_start"))
        return age > STALE_SECONDS

    def acquire(self) -> "WriterLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(20):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is None:
                    continue  # released meanwhile: try again
                if holder and holder.get("token") == self.me["token"]:
                    return self
                if not self._stale(holder):
                    raise LockedError(
                        f"{self.what} {self.output} is being written by another mpfpipe process (pid "
                        f"{holder.get('pid', '?')} on {holder.get('host', '?')}, since {holder.get('started', '?')}; "
                        f"lock {self.path}): wait for it to finish or choose another output") from None
                aside = self.path.with_name(f"{self.path.name}.stale-{uuid.uuid4().hex[:8]}")
                try:
                    os.replace(self.path, aside)  # only one taker succeeds in moving this very file
                except FileNotFoundError:
                    continue
                try:
                    moved = json.loads(aside.read_text())
                except (OSError, ValueError):
                    moved = {}
                if moved != holder:  # another taker got there first and this is its fresh lock: put it back
                    try:
                        os.link(aside, self.path)
                    except FileExistsError:
                        pass
                os.unlink(aside)
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(self.me, fh)
            self._beat = threading.Thread(target=self._heartbeat, name=f"mpfpipe-lock-{self.path.name}",
                                          daemon=True)
            self._beat.start()
            return self
        raise LockedError(f"cannot take the lock {self.path} of {self.output}: it keeps changing hands")

    def _heartbeat(self):
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                os.utime(self.path)
            except OSError:
                return

    def release(self) -> None:
        self._stop.set()
        holder = self._holder()
        if holder and holder.get("token") == self.me["token"]:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


_HELD: set = set()  # lock files this process holds: a nested call on the same output does not lock again


def locked(output_of, what: str = "output", skip=None):
    """Decorator: hold the writer lock of the output while the function runs. ``output_of`` is the name of
    the argument holding the output path, or a function of the bound arguments returning it; ``skip`` (a
    function of the bound arguments) says when no lock is needed (a dry run)."""
    def wrap(fn):
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def inner(*args, **kwargs):
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            a = bound.arguments
            if skip is not None and skip(a):
                return fn(*args, **kwargs)
            out = a[output_of] if isinstance(output_of, str) else output_of(a)
            key = lock_path(out)
            if key in _HELD:
                return fn(*args, **kwargs)
            with WriterLock(out, what):
                _HELD.add(key)
                try:
                    return fn(*args, **kwargs)
                finally:
                    _HELD.discard(key)
        return inner
    return wrap
