"""``mpfpipe bench distributed`` (alias ``mpfpipe bench --distributed``): where the time of a distributed gradient
evaluation goes.

One JSON line per evaluation on the given cluster (``--workers`` local processes, or ``--scheduler``), with the
wall time split into ``broadcast`` (the parameter scatter), ``compute`` (the tasks' own seconds / workers: the
ideal parallel time), ``reduction`` (from the last gradient task's end to the sum on the driver), ``driver``
(building the graph, unpacking) and ``idle`` (the rest: scheduling latency and imbalance), plus
``seconds_per_eval`` and ``efficiency`` = (images x task seconds per image / workers) / seconds_per_eval.

``simulate=True``: the gradient tasks sleep ``task_seconds`` per image and return a vector of the net's real
size, through the real chunk plan, broadcast, tasks and reduction tree; that measures the coordination cost of
many worker processes on one machine. Otherwise real fragment gradients of synthetic EM images of ``size`` (or
of ``dataset``'s images) are computed.
"""
from __future__ import annotations

import statistics
import tempfile
import time

import numpy as np

from ..params import init_params, ravel
from ..train.chunks import CHUNK_SECONDS, FANIN, tree_levels
from ..train.oracle import DaskOracle


def _sim_chunk(indices, params, n_out: int, seconds: float):
    """A stand-in gradient task: sleeps ``seconds`` per image, returns a vector of the real size (and timings)."""
    t0, c0 = time.time(), time.perf_counter()
    time.sleep(seconds * len(indices))
    vec = np.zeros(n_out)
    vec[0] = len(indices) + float(params[0]) * 0.0
    t1 = time.time()
    return vec, time.perf_counter() - c0, t0, t1, t1


class _Shapes:
    """The few dataset attributes the chunk plan reads, for simulated images of one size."""

    def __init__(self, n: int, size, ignore_index: int = 255):
        self.sizes = [tuple(size)] * int(n)
        self.ignore_index = ignore_index
        self.n_images = int(n)


class SimOracle(DaskOracle):
    """`DaskOracle` with sleeping tasks (no data, no kernels): the coordination path only."""

    def __init__(self, client, net, n_images: int, size, task_seconds: float, chunk_seconds=CHUNK_SECONDS):
        super().__init__(client, net, _Shapes(n_images, size), stream=True, chunk_seconds=chunk_seconds)
        self.task_seconds = float(task_seconds)

    def _map_chunks(self, keys, chunks, where, params, w, epoch, grad, spec):
        return self.client.map(_sim_chunk, [c for _, c in chunks], key=keys, pure=False,
                               workers=[where] if where else None, allow_other_workers=bool(where), params=params,
                               n_out=1 + 3 * self.K + self.n, seconds=self.task_seconds)

    def _count(self, chunks, epoch, spec):
        return np.ones(self.K, np.int64)


def _row(e, workers, net, size, per_image, simulate):
    seconds = e.wall
    t = e.timing
    compute = e.task_seconds / workers
    row = {"eval": None, "simulate": simulate, "workers": workers, "net": net.name, "size": f"{size[0]}x{size[1]}",
           "images": e.n_images, "chunks": e.n_tasks,
           "tasks": e.n_tasks + (0 if e.timing.get("driver_reduce") else
                                 sum(sum(1 for a, b in g if b - a > 1) for g in tree_levels(e.n_tasks, FANIN))),
           "param_bytes": 8 * ravel(net, init_params(net, 0)).size, "seconds_per_eval": round(seconds, 4),
           "broadcast": round(t["broadcast"], 4), "compute": round(compute, 4), "reduction": round(t["reduction"], 4),
           "driver": round(t["driver"], 4)}
    row["idle"] = round(seconds - t["broadcast"] - compute - t["reduction"] - t["driver"], 4)
    row["task_seconds_per_image"] = round(per_image, 6)
    row["efficiency"] = round(e.n_images * per_image / workers / seconds, 4)
    return row


def measure(net="steel", size=(137, 60), images: int = 256, workers: int | None = None, threads: int | None = None,
            scheduler=None, simulate: bool = False, task_seconds: float = 0.005, repeat: int = 5,
            dataset=None, chunk_seconds: float = CHUNK_SECONDS, emit=None) -> list[dict]:
    """Run ``repeat`` evaluations (after one warm-up) and return (and ``emit``) one row per evaluation, then a
    summary row of medians (``"eval": "median"``)."""
    from ..arch import load_net
    from ..cluster import connect
    from ..options import check
    from ..train.settings import class_weights

    check("bench", {"task_seconds": task_seconds, "images": images, "repeat": repeat, "workers": workers,
                    "threads": threads, "chunk_seconds": chunk_seconds})

    with connect(workers=workers, threads=threads, scheduler=scheduler, timeout=30) as h:
        n_workers = len(h.client.scheduler_info(n_workers=-1)["workers"])
        tmp = None
        if simulate:
            n = load_net(net)
            oracle = SimOracle(h.client, n, images, size, task_seconds, chunk_seconds)
            idx = list(range(images))
        else:
            from ..data import open_dataset, synth_em
            if dataset is None:
                tmp = tempfile.TemporaryDirectory(prefix="mpfpipe-bench-")
                dataset = synth_em(f"{tmp.name}/bench.zarr", n_images=images, size=size, seed=0)
            ds = open_dataset(dataset)
            n = load_net(net, in_channels=ds.channels, n_classes=ds.n_classes)
            idx = list(range(min(images, ds.n_images)))
            size = tuple(ds.sizes[0])
            oracle = DaskOracle(h.client, n, ds, chunk_seconds=chunk_seconds)
        try:
            oracle.hold(idx)
            w = class_weights(oracle.class_counts(idx, 0), True)
            x = ravel(n, init_params(n, 0))
            oracle.evaluate(x, idx, w, 0, grad=True)  # warm-up: kernels load, connections open
            rows = []
            for k in range(repeat):
                e = oracle.evaluate(x, idx, w, 0, grad=True)
                per_image = task_seconds if simulate else e.task_seconds / e.n_images
                row = _row(e, n_workers, n, size, per_image, simulate)
                row["eval"] = k + 1
                row["threads"] = h.threads
                rows.append(row)
                if emit:
                    emit(row)
        finally:
            oracle.close()
            if tmp is not None:
                tmp.cleanup()
    summary = {k: (statistics.median(r[k] for r in rows) if isinstance(rows[0][k], float) else rows[0][k])
               for k in rows[0]}
    summary["eval"] = "median"
    summary["repeat"] = repeat
    rows.append(summary)
    if emit:
        emit(summary)
    return rows
