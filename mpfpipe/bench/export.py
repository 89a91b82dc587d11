"""Benchmark the ONNX export: export time, and seconds per slice of onnxruntime against `segment`.

    mpfpipe bench export --net steel,n3,n4 --size 512x512 --slices 4 --repeat 5

Per net (random weights: the cost does not depend on their values), one JSON line with medians over ``repeat``
runs after a warm-up: ``export_s`` (safetensors -> .onnx file, `export_onnx`); ``onnxruntime_s_per_slice``
(one (1, C, H, W) slice through an InferenceSession on ``threads`` intra-op threads, normalisation, padding and
softmax included); ``mpfpipe_dense_s_per_slice`` (the same slice through mpfpipe's own dense pass in this
process, `fragment.dense_forward` on Numba's threads: what a segment block task computes);
``segment_s_per_slice`` (`segment` with ``workers=0``: the same work in this process with
Numba's threads, plus reading the input and writing the OME-Zarr output, over ``slices`` slices / slices); and
``segment_cluster_s_per_slice`` (the default LocalCluster of one worker process per core, startup included).
Needs onnx and onnxruntime (the test extra).
"""
from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def median_time(fn, repeat: int) -> float:
    """Median wall time of ``repeat`` calls of ``fn`` after one warm-up call (compilation, caches, session
    arenas)."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(net_name: str, size=(512, 512), slices: int = 4, repeat: int = 5, threads: int | None = None,
            cluster: bool = True) -> dict:
    import onnxruntime as ort
    import zarr

    from ..arch import load_net
    from ..data import normalise
    from ..fragment import dense_forward
    from ..model import Model, save_model
    from ..params import init_params
    from ..segment import segment
    from ..export.graph import export_onnx

    threads = threads or len(os.sched_getaffinity(0))
    net = load_net(net_name)
    work = Path(tempfile.mkdtemp(prefix="mpfpipe-export-bench-"))
    try:
        model_obj = Model(net, init_params(net, 0), normalisation={"mean": [120.0], "std": [40.0]})
        model = save_model(model_obj, work / "m.safetensors")
        export_s = median_time(lambda: export_onnx(model, work / "m.onnx", overwrite=True), repeat)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(work / "m.onnx"), opts, providers=["CPUExecutionProvider"])
        vol = np.random.default_rng(0).integers(0, 256, size=(slices, *size)).astype(np.uint8)
        one = vol[:1, None].astype(np.float32)
        ort_s = median_time(lambda: sess.run(None, {"raw": one}), repeat)
        norm = model_obj.normalisation
        dense_s = median_time(lambda: dense_forward(net, model_obj.params, normalise(one[0], norm)), repeat)
        zarr.save_array(str(work / "in.zarr"), vol)

        def seg(workers):
            segment(model, work / "in.zarr", work / "out.ome.zarr", block=(1, *size), workers=workers,
                    overwrite=True, progress=False)
        seg_s = median_time(lambda: seg(0), repeat) / slices
        cluster_s = median_time(lambda: seg(None), max(1, repeat // 2)) / slices if cluster else None
        return {"net": net.name, "window": net.window, "size": list(size), "threads": threads, "slices": slices,
                "repeat": repeat, "export_s": export_s, "onnx_bytes": (work / "m.onnx").stat().st_size,
                "onnxruntime_s_per_slice": ort_s, "mpfpipe_dense_s_per_slice": dense_s, "segment_s_per_slice": seg_s,
                "segment_cluster_s_per_slice": cluster_s, "onnxruntime_over_segment": ort_s / seg_s,
                "onnxruntime_version": ort.__version__}
    finally:
        shutil.rmtree(work, ignore_errors=True)
