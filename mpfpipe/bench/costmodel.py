"""A small cost model of a distributed gradient evaluation, fitted to `distributed.measure` rows, and its
projections.

    seconds_per_eval = compute x imbalance + overhead
    compute   = images x task seconds per image / workers
    imbalance = ceil(chunks / workers) / (chunks / workers)        (equal chunks, whole chunks per worker)
    overhead  = a + b x tasks + c x workers + d x param_bytes x (1 + tree levels)

``a`` is the per-evaluation constant (driver, one gather), ``b`` the scheduler's cost per task (chunk and add
tasks), ``c`` the per-worker cost (the parameters reaching every worker, heartbeats), ``d`` the per-byte cost of
moving a parameter-sized vector once per stage (the broadcast and each level of the reduction tree).

    mpfpipe bench costmodel --workers 2,4,8,16,32 --out fit.json     # measure the grid, fit, project
"""
from __future__ import annotations

import math

import numpy as np

from ..train.chunks import CHUNK_SECONDS, FANIN, image_cost, nice_count, tree_levels

TERMS = ("per_eval", "per_task", "per_worker", "per_byte_stage")


def _features(workers, tasks, param_bytes, levels):
    return [1.0, float(tasks), float(workers), float(param_bytes) * (1 + levels)]


def _imbalance(chunks, workers):
    return math.ceil(chunks / workers) / (chunks / workers) if chunks >= workers else workers / chunks


def fit(rows) -> dict:
    """Least-squares fit (non-negative by clipping) of the overhead terms to measured summary rows."""
    X, y = [], []
    for r in rows:
        levels = len(tree_levels(r["chunks"], FANIN))
        X.append(_features(r["workers"], r["tasks"], r["param_bytes"], levels))
        ideal = r["images"] * r["task_seconds_per_image"] / r["workers"] * _imbalance(r["chunks"], r["workers"])
        y.append(r["seconds_per_eval"] - ideal)
    coef, *_ = np.linalg.lstsq(np.array(X), np.array(y), rcond=None)
    coef = np.clip(coef, 0.0, None)
    pred = np.array(X) @ coef
    return {"terms": dict(zip(TERMS, (float(c) for c in coef))),
            "rms_residual_s": float(np.sqrt(np.mean((pred - np.array(y)) ** 2))), "rows": len(rows)}


def project(constants: dict, net, size, images: int, workers: int, task_seconds: float,
            chunk_seconds: float = CHUNK_SECONDS) -> dict:
    """Seconds per evaluation and efficiency of ``images`` images of ``size`` for ``net`` on ``workers``,
    with the chunk plan the oracle would make."""
    from ..params import n_params
    per = image_cost(net, *size)
    chunks = min(images, nice_count(images * per / chunk_seconds))
    levels = tree_levels(chunks, FANIN)
    tasks = chunks + sum(sum(1 for a, b in g if b - a > 1) for g in levels)
    param_bytes = 8 * n_params(net)
    t = constants["terms"]
    overhead = float(np.dot([t[k] for k in TERMS], _features(workers, tasks, param_bytes, len(levels))))
    compute = images * task_seconds / workers
    seconds = compute * _imbalance(chunks, workers) + overhead
    return {"net": net.name, "size": f"{size[0]}x{size[1]}", "images": images, "workers": workers,
            "task_seconds_per_image": task_seconds, "chunks": chunks, "tasks": tasks,
            "seconds_per_eval": round(seconds, 4), "overhead_s": round(overhead, 4),
            "efficiency": round(compute / seconds, 4)}


GRID = [("steel", (137, 60), 4096, 0.005), ("steel", (137, 60), 512, 0.005), ("n4", (64, 64), 128, 0.05)]


def run(workers=(2, 4, 8, 16, 32), repeat: int = 3, steel_seconds: float = 0.012, n4_seconds: float = 6.6,
        rows=None, emit=None) -> dict:
    """Measure the simulated grid on each of ``workers`` (or take saved ``rows``), fit, project: the fit, the
    projections and the measured rows. ``steel_seconds`` / ``n4_seconds``: measured one-thread seconds of a steel
    137x60 / an n4 512x512 training step (`mpfpipe bench engine`)."""
    from ..arch import load_net
    from .distributed import measure
    if rows is None:
        rows = []
        for w in workers:
            for net, size, images, sec in GRID:
                r = measure(net=net, size=size, images=images, workers=w, threads=1, simulate=True,
                            task_seconds=sec, repeat=repeat)[-1]
                if emit:
                    emit(r)
                rows.append(r)
    model = fit(rows)
    steel, n4 = load_net("steel"), load_net("n4")
    proj = [project(model, steel, (137, 60), 10_000, w, steel_seconds) for w in (16, 64, 256)]
    proj += [project(model, n4, (512, 512), n, w, n4_seconds) for w in (16, 64, 256) for n in (w, 4 * w)]
    if emit:
        emit({"model": model})
        for p in proj:
            emit(p)
    return {"model": model, "projections": proj, "measured": rows}
