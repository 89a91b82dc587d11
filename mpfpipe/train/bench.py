"""Measure the distributed gradient oracle: seconds per full-batch gradient evaluation for several worker counts,
parallel efficiency, per-evaluation overhead (broadcast + scheduling + tree reduce + imbalance) as a fraction of
compute, and peak memory per worker.

    python -m mpfpipe.train.bench DATASET.zarr --net n4 --workers 1,2 --images 2,8,32 --repeats 2

compute = sum of the tasks' own seconds / min(workers, tasks) (the ideal parallel time), overhead = wall - compute.
Peak memory is each worker process's maximum resident set size (ru_maxrss) after the run.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np


def _maxrss_mb():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(dataset, net="n4", workers=(1, 2), images=(4,), repeats=2, threads=1, maps=None, hidden=None,
            echo=print) -> list[dict]:
    from ..arch import load_net, preset
    from ..data import open_dataset
    from ..params import init_params, ravel
    from .cluster import connect
    from .driver import class_weights
    from .oracle import DaskOracle

    ds = open_dataset(dataset)
    n = (preset(net, maps=maps, hidden=hidden, in_channels=ds.channels, n_classes=ds.n_classes)
         if (maps or hidden) else load_net(net, in_channels=ds.channels, n_classes=ds.n_classes))
    counts = [images] if isinstance(images, int) else list(images)
    x = ravel(n, init_params(n, 0))
    rows = []
    for w in workers:
        with connect(workers=w, threads=threads) as h:
            oracle = DaskOracle(h.client, n, ds)
            for m in counts:
                idx = list(range(min(m, ds.n_images)))
                t0 = time.perf_counter()
                oracle.hold(idx)
                hold = time.perf_counter() - t0
                weights = class_weights(oracle.class_counts(idx, 0), True)
                oracle.evaluate(x, idx, weights, 0, grad=True)  # warm-up: Numba kernels load in every worker
                evals = []
                for _ in range(repeats):
                    e = oracle.evaluate(x, idx, weights, 0, grad=True)
                    compute = e.task_seconds / min(w, len(idx))
                    evals.append({"wall": e.wall, "compute": compute, "overhead": e.wall - compute,
                                  "task_mean": e.task_seconds / len(idx)})
                row = {"workers": w, "threads": threads, "images": len(idx), "size": list(ds.sizes[idx[0]]),
                       "net": n.name, "hold_s": hold,
                       "wall_s": float(np.median([e["wall"] for e in evals])),
                       "compute_s": float(np.median([e["compute"] for e in evals])),
                       "overhead_s": float(np.median([e["overhead"] for e in evals])),
                       "task_s": float(np.median([e["task_mean"] for e in evals])), "evals": evals}
                row["overhead_frac"] = row["overhead_s"] / row["compute_s"]
                rows.append(row)
                echo(json.dumps({k: v for k, v in row.items() if k != "evals"}))
            rss = h.client.run(_maxrss_mb)
            for row in rows:
                if row["workers"] == w:
                    row["peak_rss_mb"] = sorted(rss.values())
            oracle.close()
    for r in rows:
        base = next((b for b in rows if b["workers"] == 1 and b["images"] == r["images"]), None)
        if base:
            r["efficiency"] = base["wall_s"] / (r["workers"] * r["wall_s"])
        echo(f"workers {r['workers']}, images {r['images']}: {r['wall_s']:.2f} s/eval"
             + (f", efficiency {100 * r['efficiency']:.1f} %" if "efficiency" in r else "")
             + f", overhead {r['overhead_s']:.3f} s = {100 * r['overhead_frac']:.2f} % of compute, "
             f"peak RSS {[round(v) for v in r['peak_rss_mb']]} MB")
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset")
    ap.add_argument("--net", default="n4")
    ap.add_argument("--maps", type=int, default=None)
    ap.add_argument("--hidden", type=int, default=None)
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--images", default="4", help="comma-separated batch sizes (images per evaluation)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", default=None, help="write the rows here")
    a = ap.parse_args(argv)
    rows = measure(a.dataset, a.net, [int(w) for w in a.workers.split(",")],
                   [int(m) for m in a.images.split(",")], a.repeats, a.threads,
                   a.maps, a.hidden)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
