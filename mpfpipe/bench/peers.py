"""`mpfpipe bench peers` (also ``mpfpipe bench --peers``): the engine beside the best peers on the same dense job,
in one run.

Per net and image size, one JSON line per phase with the median seconds of
- ``engine_s``: the fragment engine (`fragment.dense_forward` / `dense_loss_grad`), in a fresh process as every
  `mpfpipe bench` case;
- ``onnxruntime_s`` (inference): onnxruntime running `mpfpipe export`'s graph of the same model (stride-1 pools and
  dilated convolutions in place of fragments, the same multiply-adds) on as many intra-op threads;
- ``torch_s``: PyTorch's dilated dense forward, and forward + backward for a training step (`_torch_dense`), run by
  ``torch_python`` (a Python with torch; torch is never a dependency of mpfpipe);
and the ratios ``engine_over_onnxruntime`` / ``engine_over_torch`` (below 1: the engine is faster), the job's
useful GFLOP, the engine's GFLOP/s and its share of the same-run float32 matmul peak (`bench.matmul_peak`, numpy's
BLAS) and of the cores' FMA peak (`bench._fma`: BLAS kernels are not equally tuned for every CPU).
A peer that is not installed is reported as absent with the reason, never as a number.

``rounds``: the three runtimes are timed in turn, ``rounds`` times, the order rotating each round so that none
always runs first. A shared or throttled machine drifts over minutes, and medians taken in different minutes then
give ratios that swing (steel 137x60 training: 0.31 and 0.49 of PyTorch in two runs of one session). So each
ratio is the median of the per-round ratios, each of one round's times (seconds apart); ``*_s`` are the medians
over rounds, ``per_round`` holds each round's times and ``*_range`` the smallest and largest per-round ratio.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..arch import ConvOp, load_net
from ..cost import flops
from ._fma import fma_peak
from .engine import matmul_peak, run_isolated
from .export import median_time


def _onnxruntime(net, params, size, threads, work: Path):
    """(a callable running one inference of the exported graph on ``threads`` intra-op threads, or None; note)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None, "onnxruntime is not installed (pip install onnxruntime)"
    from ..export.graph import export_onnx
    from ..model import Model, save_model
    model = save_model(Model(net, params, normalisation={"mean": [120.0], "std": [40.0]}), work / "m.safetensors")
    export_onnx(model, work / "m.onnx", overwrite=True)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(work / "m.onnx"), opts, providers=["CPUExecutionProvider"])
    raw = np.random.default_rng(0).integers(0, 256, size=(1, net.in_channels, *size)).astype(np.float32)
    return (lambda: sess.run(None, {"raw": raw})), f"onnxruntime {ort.__version__}"


def _torch(net, params, size, threads, repeat, phases, torch_python, work: Path):
    python = torch_python or sys.executable
    probe = subprocess.run([python, "-c", "import torch"], capture_output=True, text=True)
    if probe.returncode != 0:
        return {}, (f"torch is not importable by {python}" +
                    ("" if torch_python else "; give a Python that has it with --torch-python"))
    ops = [{"type": "conv", "name": op.name, "k": op.k, "kz": op.kz, "act": op.act} if isinstance(op, ConvOp)
           else {"type": "pool", "p": op.p, "pz": op.pz} for op in net.ops]
    three = net.ndim == 3
    spec = {"ops": ops, "ndim": net.ndim, "size": list(size), "threads": threads,
            "stride": list(net.stride3 if three else (net.stride,) * 2),
            "window": list(net.window3 if three else (net.window,) * 2),
            "in_channels": net.in_channels, "n_classes": net.n_classes, "repeat": repeat, "phases": list(phases)}
    (work / "spec.json").write_text(json.dumps(spec))
    np.savez(work / "w.npz", **{k: np.ascontiguousarray(v, np.float32) for k, v in params.items()})
    out = subprocess.run([python, str(Path(__file__).with_name("_torch_dense.py")), str(work / "spec.json"),
                          str(work / "w.npz")], capture_output=True, text=True)
    if out.returncode != 0:
        return {}, f"the torch job failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else '?'}"
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return res, f"torch {res['torch_version']}"


def run(nets=("n4", "n3", "steel"), sizes=((512, 512),), phases=("infer", "train"), repeat: int = 5,
        threads: int | None = None, torch_python: str | None = None, rounds: int = 3, emit=None) -> list[dict]:
    """Run the side-by-side comparison; returns (and emits, if given a callable) one dict per line. The thread
    count is set for the run only: this process's Numba threads (the peak is measured on as many BLAS threads) and
    MPFPIPE_THREADS, which the engine's cases in child processes read (`apply_thread_limit`)."""
    import numba
    threads = threads or numba.get_num_threads()
    old_env, old_threads = os.environ.get("MPFPIPE_THREADS"), numba.get_num_threads()
    os.environ["MPFPIPE_THREADS"] = str(threads)
    numba.set_num_threads(threads)
    try:
        return _run(nets, sizes, phases, repeat, threads, torch_python, rounds, emit)
    finally:
        numba.set_num_threads(old_threads)
        if old_env is None:
            os.environ.pop("MPFPIPE_THREADS", None)
        else:
            os.environ["MPFPIPE_THREADS"] = old_env


_RUNTIMES = ("engine", "onnxruntime", "torch")


def _rounds(name, net, params, size, phases, repeat, threads, torch_python, rounds, work) -> tuple[list, dict]:
    """(per round, per phase: {runtime: seconds or None}; {runtime: note}), the runtimes in rotating order."""
    ort_fn, notes = None, {}
    if "infer" in phases:
        ort_fn, notes["onnxruntime"] = _onnxruntime(net, params, size, threads, work)
    per = []
    for r in range(rounds):
        times = {phase: {} for phase in phases}
        for who in _RUNTIMES[r % 3:] + _RUNTIMES[:r % 3]:
            if who == "engine":
                for phase in phases:
                    times[phase]["engine"] = run_isolated(name, size, "mpf", phase, repeat, 256)["seconds"]
            elif who == "onnxruntime" and "infer" in phases:
                times["infer"]["onnxruntime"] = median_time(ort_fn, repeat) if ort_fn else None
            elif who == "torch":
                res, notes["torch"] = _torch(net, params, size, threads, repeat, phases, torch_python, work)
                for phase in phases:
                    times[phase]["torch"] = res.get(f"{phase}_s")
        per.append(times)
    return per, notes


def _ratios(rec: dict, per_phase: list, peer: str) -> None:
    """``rec``'s ``{peer}_s`` (median over rounds), ``engine_over_{peer}`` (median of the per-round ratios) and
    its range; None where the peer is absent."""
    t = [p[peer] for p in per_phase]
    if any(x is None for x in t):
        rec[f"{peer}_s"] = rec[f"engine_over_{peer}"] = None
        return
    ratios = [p["engine"] / p[peer] for p in per_phase]
    rec[f"{peer}_s"] = round(statistics.median(t), 6)
    rec[f"engine_over_{peer}"] = round(statistics.median(ratios), 3)
    rec[f"engine_over_{peer}_range"] = [round(min(ratios), 3), round(max(ratios), 3)]


def _run(nets, sizes, phases, repeat, threads, torch_python, rounds, emit) -> list[dict]:
    from ..params import init_params
    peak, fma = matmul_peak(), fma_peak(threads)
    results = [peak, fma]
    if emit:
        emit(peak)
        emit(fma)
    for name in nets:
        net = load_net(name)
        params = init_params(net, 0, np.float32)
        for size in sizes:
            work = Path(tempfile.mkdtemp(prefix="mpfpipe-peers-"))
            try:
                per, notes = _rounds(name, net, params, size, phases, repeat, threads, torch_python, rounds, work)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            for phase in phases:
                rows = [p[phase] for p in per]
                eng = statistics.median(p["engine"] for p in rows)
                gflop = flops(net, True, size, phase) / 1e9
                rec = {"case": "peers", "net": net.name, "size": "x".join(map(str, size)), "phase": phase,
                       "threads": threads, "rounds": rounds, "engine_s": round(eng, 6), "gflop": round(gflop, 3),
                       "engine_gflops": round(gflop / eng, 2), "peak_gflops": peak["gflops"],
                       "engine_share_of_peak": round(gflop / eng / peak["gflops"], 4),
                       "fma_peak_gflops": fma["gflops"],
                       "engine_share_of_fma_peak": round(gflop / eng / fma["gflops"], 4)}
                if phase == "infer":
                    _ratios(rec, rows, "onnxruntime")
                    rec["onnxruntime"] = notes["onnxruntime"]
                _ratios(rec, rows, "torch")
                rec["torch"] = notes["torch"]
                rec["per_round"] = [{k: (round(v, 6) if v is not None else None) for k, v in p.items()} for p in rows]
                results.append(rec)
                if emit:
                    emit(rec)
    return results
