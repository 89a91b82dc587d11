"""Benchmarks of the fragment engine (``mpfpipe bench engine``): one JSON object per case.

Each case times a training step (forward + backward of the summed per-pixel loss) or an inference pass, either in
fragment mode over a whole H x W image (every pixel is one patch) or in patch mode over a batch of windows on the
same kernels. ``seconds`` is the median of ``repeat`` runs after one warm-up; ``gflops`` is the useful
multiply-add work of the patch-free dense job (2 flops per MAC; training counts forward, input gradient and weight
gradient) divided by the time; ``peak_rss_mib`` is the process's peak resident memory sampled during the case.
Each case runs in a fresh Python process (``isolate``), so one case's heap and caches do not slow the next (after
an n4 512x512 case, the steel cases ran up to 10x slower in the same process).
"""
from __future__ import annotations

import json
import os
import statistics
import threading
import time

import numpy as np

from ..arch import load_net
from ..cost import flops
from ..fragment import dense_forward, dense_loss_grad
from ..params import init_params
from ..patch import patch_forward, patch_loss_grad

DEFAULT_CASES = [("n4", (512, 512)), ("n3", (512, 512)), ("steel", (512, 512)), ("steel", (137, 60))]


class _PeakRSS:
    """Samples this process's resident set size in a background thread."""

    def __init__(self, interval=0.005):
        import psutil
        self._proc = psutil.Process()
        self._interval = interval
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self):
        self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(self._interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def _threads() -> int:
    import numba
    return int(numba.get_num_threads())


def run_case(net_name: str, size: tuple[int, int], mode: str, phase: str, repeat: int = 5, batch: int = 256,
             seed: int = 0, dtype=np.float32) -> dict:
    net = load_net(net_name)
    params = init_params(net, seed, dtype)
    rng = np.random.default_rng(seed)
    size = tuple(size)  # (H, W), or (Z, Y, X) for a 3D net's volume
    if mode == "mpf":
        image = rng.standard_normal((net.in_channels, *size)).astype(dtype)
        labels = rng.integers(0, net.n_classes, size=size).astype(np.uint8)
        if phase == "train":
            def job():
                dense_loss_grad(net, params, image, labels, dtype=dtype)
        else:
            def job():
                dense_forward(net, params, image, dtype=dtype)
        patches = int(np.prod(size))
    else:
        window = net.window3 if net.ndim == 3 else (net.window, net.window)
        windows = rng.standard_normal((batch, net.in_channels, *window)).astype(dtype)
        labels = rng.integers(0, net.n_classes, size=batch).astype(np.uint8)
        if phase == "train":
            def job():
                patch_loss_grad(net, params, windows, labels, dtype=dtype)
        else:
            def job():
                patch_forward(net, params, windows, dtype=dtype)
        patches = batch
    job()  # warm-up: compiles kernels, faults in memory
    times, cpu = [], []
    with _PeakRSS() as rss:
        for _ in range(repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            job()
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)  # all threads; on a shared machine less noisy than the wall time
    seconds = statistics.median(times)
    fl = flops(net, mode == "mpf", size, phase, 1 if mode == "mpf" else batch)
    shown = size if mode == "mpf" else (batch, *window)
    return {"net": net_name, "size": "x".join(map(str, shown)),
            "mode": mode, "phase": phase, "seconds": round(seconds, 6), "min_seconds": round(min(times), 6),
            "cpu_seconds": round(statistics.median(cpu), 6),
            "repeat": repeat, "patches_per_s": round(patches / seconds, 1), "gflops": round(fl / seconds / 1e9, 2),
            "gflop": round(fl / 1e9, 3), "peak_rss_mib": round(rss.peak / 2**20, 1), "threads": _threads(),
            "dtype": np.dtype(dtype).name, "cpu_count": os.cpu_count()}


def matmul_peak(n: int = 2048, repeat: int = 5) -> dict:
    """float32 matmul throughput of numpy's BLAS on this machine (the peak the targets refer to), with as many BLAS
    threads as the cases run on (whatever OPENBLAS_NUM_THREADS says: it is often set to 1 to keep BLAS threads
    from fighting Numba's, which made this report one core's peak)."""
    from threadpoolctl import threadpool_limits
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = np.random.default_rng(1).random((n, n), dtype=np.float32)
    times = []
    with threadpool_limits(limits=_threads(), user_api="blas"):
        a @ b
        for _ in range(repeat):
            t0 = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t0)
    seconds = statistics.median(times)
    return {"case": "matmul_peak", "n": n, "seconds": round(seconds, 6), "gflops": round(2 * n**3 / seconds / 1e9, 2),
            "threads": _threads()}


def run_isolated(net_name, size, mode, phase, repeat, batch) -> dict:
    import subprocess
    import sys
    spec = json.dumps({"net_name": net_name, "size": list(size), "mode": mode, "phase": phase, "repeat": repeat,
                       "batch": batch})
    out = subprocess.run([sys.executable, "-m", "mpfpipe.bench.engine", spec], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark case {net_name} {mode} {phase} failed: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(nets=None, sizes=None, modes=("mpf", "patch"), phases=("train", "infer"), repeat=5, batch=256, peak=True,
        emit=None, isolate=True):
    """Run the benchmark grid; yields (and emits, if given a callable) one dict per case."""
    if nets or sizes:
        cases = [(n, s) for n in (nets or ["n4"]) for s in (sizes or [(512, 512)])]
    else:
        cases = DEFAULT_CASES
    results = []
    if peak:
        results.append(matmul_peak())
        if emit:
            emit(results[-1])
    done_patch = set()
    for net_name, size in cases:
        for mode in modes:
            if mode == "patch":
                if net_name in done_patch:
                    continue  # the patch baseline does not depend on the image size
            for phase in phases:
                case = run_isolated if isolate else run_case
                r = case(net_name, size, mode, phase, repeat=repeat, batch=batch)
                results.append(r)
                if emit:
                    emit(r)
            if mode == "patch":
                done_patch.add(net_name)
    return results


def dumps(record: dict) -> str:
    return json.dumps(record, sort_keys=False)


if __name__ == "__main__":  # one isolated case: python -m mpfpipe.bench.engine '{"net_name": ..., ...}'
    import sys
    _spec = json.loads(sys.argv[1])
    _spec["size"] = tuple(_spec["size"])
    print(dumps(run_case(**_spec)))
