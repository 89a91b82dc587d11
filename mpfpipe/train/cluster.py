"""The Dask cluster a training run uses: an embedded LocalCluster (default) or an existing scheduler.

Threads. Every gradient task runs the fragment engine, whose Numba kernels (and any BLAS call) are themselves
multi-threaded. A worker therefore gets ONE Dask thread (one image at a time) and ``threads`` Numba/BLAS threads,
and the embedded cluster starts ``workers`` worker processes with ``workers * threads <= cores``: by default one
process per core with one thread each (no oversubscription, no parallel-loop overhead, the images of a batch are
the parallelism), or ``threads = cores // workers`` when fewer workers are asked for. The thread counts reach the
worker processes through the nanny's environment (``MPFPIPE_THREADS``, applied with numba.set_num_threads, and
``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``, read before the BLAS starts). Reduced gradients are
bit-identical for any number of workers and any threads per worker (the chunk plan and the kernels' reduction
slabs do not depend on either); on an external cluster the thread count is whatever its workers were started with.

Network: the embedded scheduler, workers and dashboard listen on ``host`` (default loopback 127.0.0.1, so nothing
is exposed to the network unless asked) on free ports.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import dask

from .._env import check_scheduler_file
from .._runtime import prespawn_config, worker_env
from ..errors import ClusterError



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


def connect(*, workers: int | None = None, threads: int | None = None, scheduler: str | None = None,
            scheduler_file: str | None = None, host: str = "127.0.0.1", timeout: float = 10.0,
            memory_limit="auto", quiet: bool = True) -> ClusterHandle:
    """Start the embedded LocalCluster or join an existing scheduler (``tcp://host:port`` or a scheduler file).
    Raises ClusterError with the address and a hint when the scheduler cannot be reached within ``timeout``."""
    from distributed import Client, LocalCluster

    if scheduler and scheduler_file:
        raise ClusterError("give either --scheduler or --scheduler-file, not both")
    if scheduler or scheduler_file:
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

    workers, threads = choose_layout(workers, threads)
    env = worker_env(threads)
    try:
        with dask.config.set(prespawn_config()):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host=host,
                                   dashboard_address=f"{host}:0", env=env, memory_limit=memory_limit,
                                   silence_logs=logging.CRITICAL if quiet else logging.WARNING)
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
