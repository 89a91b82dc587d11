"""The Dask cluster every command uses: an embedded LocalCluster (default), an existing scheduler, or none.

One vocabulary for train, segment (volumes and folders), the training oracle, workflows and the benchmarks:

- ``scheduler``: an address (``tcp://host:8786``, ``tls://...``, ``host:port``) or a scheduler file (the JSON
  that ``dask scheduler --scheduler-file`` writes); ``--scheduler-file`` is kept as an alias on the command line.
  Joining one gives the TLS hint, a ``timeout`` to reach it and a wait for its workers.
- otherwise a LocalCluster of ``workers`` processes on ``host`` (default loopback 127.0.0.1, so nothing is exposed
  to the network unless asked), on free ports; ``workers=0`` (where a command allows it) runs every task in this
  process without Dask (`TaskRunner`).

Threads. Every task runs the fragment engine, whose Numba kernels (and any BLAS call) are themselves
multi-threaded. A worker therefore gets ONE Dask thread (one task at a time) and ``threads`` Numba/BLAS threads,
and the embedded cluster starts ``workers`` worker processes with ``workers * threads <= cores`` (`choose_layout`):
by default one process per core with one thread each (no oversubscription, no parallel-loop overhead, the images
of a batch are the parallelism), or ``threads = cores // workers`` when fewer workers are asked for. The thread
counts reach the worker processes through the nanny's environment (``MPFPIPE_THREADS``, applied with
numba.set_num_threads, and ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``, read before the BLAS
starts). Reduced gradients are bit-identical for any number of workers and any threads per worker (the chunk plan
and the kernels' reduction slabs do not depend on either); on an external cluster the thread count is whatever its
workers were started with.
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import re
import time
from dataclasses import dataclass

import dask

from . import _stop
from ._env import check_scheduler_file
from ._runtime import prespawn_config, worker_env
from .errors import ClusterError

DEFAULT_TIMEOUT = 10.0  # seconds to reach a scheduler
# The local cluster's housekeeping, slowed (segmentation): the workers' profiler (every 10 ms), event-loop ticks
# (20 ms) and memory polls (100 ms) took ~4 % of a core in an idle 2-worker cluster's driver and ~3 % per worker,
# CPU that the blocks of a 2-core machine lack; blocks take ~1 s, so nothing we use is lost (memory limits still
# act within a second).
QUIET_CLUSTER = {"distributed.worker.profile.enabled": False, "distributed.admin.tick.interval": "1s",
                 "distributed.admin.system-monitor.interval": "2s",
                 "distributed.worker.memory.monitor-interval": "1s"}
_ADDRESS = re.compile(r"^[A-Za-z0-9._\-\[\]:]+:\d+$")  # host:port, [v6]:port


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def choose_layout(workers: int | None = None, threads: int | None = None, cores: int | None = None) -> tuple[int, int]:
    """(worker processes, Numba/BLAS threads per worker) for the embedded cluster: workers default to
    ``cores // threads`` (i.e. one per core), threads to ``cores // workers``, both at least 1."""
    cores = cores or cpu_count()
    if workers is not None and workers < 1:
        raise ClusterError(f"--workers must be >= 1, got {workers}")
    if threads is not None and threads < 1:
        raise ClusterError(f"--threads must be >= 1, got {threads}")
    if workers is None:
        workers = max(1, cores // (threads or 1))
    if threads is None:
        threads = max(1, cores // workers)
    return workers, threads


def is_address(scheduler: str) -> bool:
    """True for a scheduler address (``proto://...`` or ``host:port``), False for a scheduler file's path."""
    return "://" in scheduler or bool(_ADDRESS.match(scheduler))


@dataclass
class ClusterHandle:
    """A connected client; ``cluster`` is the embedded LocalCluster (None when joining an external one)."""
    client: object
    cluster: object | None
    address: str
    workers: int
    threads: int | None
    dashboard: str | None

    def close(self):
        for thing in (self.client, self.cluster):
            if thing is None:
                continue
            try:
                thing.close()
            except Exception:  # noqa: BLE001 - closing a broken cluster must not hide the real error
                pass

    def worker_pids(self) -> dict:
        return self.client.run(os.getpid)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _dashboard(client) -> str | None:
    try:
        import bokeh  # noqa: F401 - the dashboard needs it
    except ImportError:
        return None
    try:
        return client.dashboard_link
    except Exception:  # noqa: BLE001
        return None


def _join(scheduler, scheduler_file, workers, threads, timeout) -> ClusterHandle:
    from distributed import Client

    if scheduler and not is_address(scheduler):  # a path: the scheduler file
        scheduler, scheduler_file = None, scheduler
    where = scheduler or f"the scheduler in {scheduler_file}"
    if scheduler_file:
        check_scheduler_file(scheduler_file)
    try:
        client = (Client(scheduler, timeout=timeout) if scheduler
                  else Client(scheduler_file=scheduler_file, timeout=timeout))
    except TypeError as exc:
        if "ssl" not in str(exc).lower() and "tls" not in str(exc).lower():
            raise
        raise ClusterError(f"{where} is a TLS address but this client has no TLS settings: point DASK_CONFIG "
                           "at a distributed config with distributed.comm.tls.{ca-file, client.cert, "
                           "client.key} (deploy/tls/make-certs.sh writes one)") from None
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(f"cannot reach the Dask scheduler at {where} within {timeout:g} s "
                           f"({type(exc).__name__}: {exc}); is it running and is the address right?") from None
    try:
        n = len(client.scheduler_info(n_workers=-1)["workers"])
        if workers:  # wait for the asked-for number of workers
            client.wait_for_workers(workers, timeout=max(timeout, 60))
            n = len(client.scheduler_info(n_workers=-1)["workers"])
        elif n == 0:
            client.wait_for_workers(1, timeout=max(timeout, 60))
            n = len(client.scheduler_info(n_workers=-1)["workers"])
    except (OSError, TimeoutError) as exc:
        client.close()
        raise ClusterError(f"the Dask scheduler at {where} has no workers ({exc})") from None
    return ClusterHandle(client, None, client.scheduler.address, n, threads, _dashboard(client))


def connect(*, workers: int | None = None, threads: int | None = None, scheduler: str | None = None,
            scheduler_file: str | None = None, host: str = "127.0.0.1", timeout: float = DEFAULT_TIMEOUT,
            memory_limit="auto", quiet: bool = True, slow_housekeeping: bool = False) -> ClusterHandle:
    """Start the embedded LocalCluster or join an existing scheduler (``scheduler``: an address or a scheduler
    file; ``scheduler_file``: a file). Raises ClusterError with the address and a hint when the scheduler cannot
    be reached within ``timeout``. ``slow_housekeeping``: the local cluster runs with `QUIET_CLUSTER`."""
    from distributed import Client, LocalCluster

    if scheduler and scheduler_file:
        raise ClusterError("give either --scheduler or --scheduler-file, not both")
    if scheduler or scheduler_file:
        return _join(scheduler, scheduler_file, workers, threads, timeout)
    workers, threads = choose_layout(workers, threads)
    env = worker_env(threads)
    extra = {"scheduler_kwargs": {"dashboard": False}} if slow_housekeeping else {}
    try:
        with dask.config.set({**prespawn_config(), **(QUIET_CLUSTER if slow_housekeeping else {})}):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host=host,
                                   dashboard_address=f"{host}:0", env=env, memory_limit=memory_limit,
                                   silence_logs=logging.CRITICAL if quiet else logging.WARNING, **extra)
            client = Client(cluster, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"cannot start a local Dask cluster of {workers} worker(s) on {host}: {exc}") from None
    return ClusterHandle(client, cluster, cluster.scheduler_address, workers, threads, _dashboard(client))


def worker_memory(client) -> int:
    """Total memory limit of the cluster's workers in bytes (0 when unknown / unlimited)."""
    try:
        info = client.scheduler_info(n_workers=-1)["workers"]
    except Exception:  # noqa: BLE001
        return 0
    return int(sum(w.get("memory_limit") or 0 for w in info.values()))


class _Local:
    """A task run in this process (``workers=0``), when its result is first asked for (tasks are consumed in
    submission order, so the progress bar moves as they run): its result or its exception, as a Dask future."""

    def __init__(self, fn, args):
        self._fn, self._args, self._out = fn, args, None

    def result(self):
        if self._out is None:
            try:
                self._out = (self._fn(*(a.result() if isinstance(a, _Local) else a for a in self._args)), None)
            except Exception as exc:  # noqa: BLE001 - reported to the caller, as a failed Dask task
                self._out = (None, exc)
            self._fn = self._args = None
        value, error = self._out
        if error is not None:
            raise error
        return value

    def release(self):
        pass


class TaskRunner:
    """Run tasks on the cluster or, with ``workers=0`` and no scheduler, in this process (debugging, small jobs):
    ``scatter`` shares an object with every worker, ``submit`` starts a task (its arguments may be earlier tasks,
    which it then waits for), ``completed`` yields (task, result or exception) as tasks finish, checking for a
    stop request between them. In this process tasks run one by one, in the order they were submitted."""

    def __init__(self, client=None):
        self.client = client
        self.local = client is None

    def slots(self) -> int:
        return 1 if self.local else (sum(self.client.nthreads().values()) or 1)

    def scatter(self, obj):
        return obj if self.local else self.client.scatter(obj, broadcast=True)

    def submit(self, fn, *args, key: str, retries: int = 0):
        if self.local:
            return _Local(fn, args)
        return self.client.submit(fn, *args, key=key, retries=retries)

    def completed(self, tasks):
        if self.local:
            done = tasks
        else:
            from distributed import as_completed
            done = as_completed(tasks)
        for task in done:
            _stop.check()
            try:
                out = task.result()
            except Exception as exc:  # noqa: BLE001 - a failed task is reported, the others go on
                out = exc
            task.release()
            yield task, out


# (arguments, runner) of the `shared_runner` block this code runs in, if any
_SHARED: contextvars.ContextVar = contextvars.ContextVar("mpfpipe_shared_runner", default=None)


@contextlib.contextmanager
def shared_runner(workers: int | None = None, threads: int | None = None, scheduler: str | None = None,
                  timeout: float = DEFAULT_TIMEOUT):
    """One `task_runner` for several steps: inside this block, `task_runner` with the same arguments yields this
    runner instead of starting (and closing) a cluster of its own. ``segment --instances`` runs its two steps on
    one LocalCluster: a second start had been ~1.4 s, 7 % of the instance step on 20 x 2048^2."""
    with task_runner(workers, threads, scheduler, timeout) as runner:
        token = _SHARED.set(((workers, threads, scheduler), runner))
        try:
            yield runner
        finally:
            _SHARED.reset(token)


@contextlib.contextmanager
def task_runner(workers: int | None = None, threads: int | None = None, scheduler: str | None = None,
                timeout: float = DEFAULT_TIMEOUT):
    """A `TaskRunner` in this process (``workers == 0`` and no scheduler) or on a cluster (`connect`: the
    scheduler, else a LocalCluster of ``workers`` x ``threads`` with slowed housekeeping); ``.startup`` is the
    seconds it took to get it. Within a `shared_runner` of the same arguments: that one."""
    shared = _SHARED.get()
    if shared is not None and shared[0] == (workers, threads, scheduler):
        yield shared[1]
        return
    t0 = time.perf_counter()
    if workers == 0 and not scheduler:
        runner = TaskRunner()
        runner.startup = 0.0
        yield runner
        return
    with connect(workers=workers or None, threads=threads, scheduler=scheduler, timeout=timeout,
                 slow_housekeeping=True) as handle:
        runner = TaskRunner(handle.client)
        runner.startup = time.perf_counter() - t0
        yield runner
