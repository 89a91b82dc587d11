"""``mpfpipe bench segment VOLUME`` (alias ``mpfpipe bench --segment VOLUME``): whole-volume segmentation against
the engine alone, as JSON records.

The engine's dense-forward throughput is `engine`'s ``mpf``/``infer`` case on a ``size`` image (default
512 x 512, the slice of `bench engine` and `bench peers`), each in a fresh process, at 1 thread and at T =
workers x threads threads; the engine's rate is the better of the T-thread run and T times the 1-thread run
(perfect scaling), so the ratio is conservative. `segment` then runs on VOLUME in ``block`` blocks (default:
segment's own, `segment.blocks.default_block`) with the same T threads (by default T worker processes of one
thread, its default layout), without a pyramid and with its automatic pyramid, alternating, ``repeat`` times each;
its rate is voxels over the wall time of the whole `segment` call (cluster start-up, model loading, reads, writes
and the done markers included). Records:

- ``engine``: the engine cases and their rate in voxels/s; when the block's y x differs from ``size``, also the
  engine on one block's y x (``engine_at_block``), and the summary's ``ratio_at_block`` and
  ``ratio_with_pyramid_at_block`` are segment's rate against it: what is left once the halo, which a larger block
  computes less of, is taken out;
- ``segment`` (one per run) and ``segment_summary``: medians, ``ratio`` (segment / engine), ``pyramid_cost``
  (median wall time with the pyramid / without, minus 1) and the peak resident memory per worker;
  ``cpu_ratio`` and ``pyramid_cpu_cost`` are the same in CPU time (all processes: driver, scheduler, workers,
  against the engine's CPU time per voxel), which another user's load on a shared machine distorts less; each
  ``segment`` record also has the wall time of the forward passes and of the reads and writes beside them, and
  the load average (1, 5, 15 min) at its end;
- with ``instances``, the instance step (`mpfpipe.segment.instances.label_instances`, as ``segment --instances``
  runs it: same workers and threads, on the cluster segment started, kept open for it) on each output with the
  pyramid (segment's time still includes the cluster start; CPU times include the live workers'): each such
  ``segment`` record gets ``instances_seconds``, ``instances_cpu_seconds`` and ``instances_objects``, the summary
  their medians and ``instances_share`` (instance seconds / segment's seconds with the pyramid) and
  ``instances_cpu_share``. Its cost depends on the probabilities: random weights give noise, so pass a trained
  ``model`` to measure what a user's volume costs;
- ``read``: blockwise read throughput (every block with its halo, as the block tasks read) of VOLUME and of a
  copy in the other format (Zarr <-> HDF5) with the same chunks, in voxels/s and MiB/s.

The engine is timed before and after the segment runs and the medians taken, since the machine may be shared.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ..segment.blocks import block_grid, read_with_halo


def engine_rate(net_name: str, size, threads: int, repeat: int) -> dict:
    """Engine voxels/s at ``threads`` threads: the better of a ``threads``-thread run and ``threads`` x one
    1-thread run, each case in a fresh process (`engine.run_isolated`)."""
    from . import engine
    H, W = size
    cases = {}
    for t in sorted({1, threads}):
        old = os.environ.get("NUMBA_NUM_THREADS")
        os.environ["NUMBA_NUM_THREADS"] = str(t)
        try:
            cases[t] = engine.run_isolated(net_name, size, "mpf", "infer", repeat, 1)
        finally:
            if old is None:
                os.environ.pop("NUMBA_NUM_THREADS", None)
            else:
                os.environ["NUMBA_NUM_THREADS"] = old
    rate = max(H * W / cases[threads]["seconds"], threads * H * W / cases[1]["seconds"])
    return {"case": "engine", "net": net_name, "size": f"{H}x{W}", "threads": threads,
            "seconds_1_thread": cases[1]["seconds"], f"seconds_{threads}_threads": cases[threads]["seconds"],
            "voxels_per_s": round(rate, 1),
            "cpu_seconds_per_voxel": min(cases[t]["cpu_seconds"] for t in cases) / (H * W)}


def _cpu_seconds(client=None) -> float:
    """CPU time of this process and of its finished children (the LocalCluster's workers, once closed), plus that
    of the live workers of ``client`` (a cluster kept open across steps: `cluster.shared_runner`)."""
    import resource
    live = sum(client.run(time.process_time).values()) if client is not None else 0.0
    return live + sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                          resource.getrusage(resource.RUSAGE_CHILDREN)))


def read_rate(volume, block, halo, repeat: int = 1) -> dict:
    """Read every block of ``volume`` with its halo, as the block tasks do; voxels (of the blocks) per second."""
    blocks = block_grid(volume.shape, block)
    volume = dataclasses.replace(volume)  # a fresh handle: the store or file is opened (and timed) anew
    times, nbytes = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        nbytes = 0
        for b in blocks:
            for z in range(*b.z):
                nbytes += read_with_halo(volume.read, (z, z + 1), b.y, b.x, volume.shape[1:], halo).nbytes
        times.append(time.perf_counter() - t0)
    s = statistics.median(times)
    vox = int(np.prod(volume.shape)) * volume.channels
    return {"case": "read", "format": volume.kind, "path": volume.path, "array": volume.array, "seconds": round(s, 3),
            "voxels_per_s": round(vox / s, 1), "mib_per_s": round(nbytes / s / 2**20, 1)}


def _copy(volume, workdir: Path):
    """The volume in the other format (Zarr -> HDF5, anything else -> Zarr), chunked one slice x the block tile."""
    from ..data.volume import open_volume
    Z, Y, X = volume.shape
    chunks = (1, min(512, Y), min(512, X))
    if volume.kind == "hdf5":
        import zarr
        dst = workdir / "copy.zarr"
        arr = zarr.create_array(str(dst), shape=(Z, Y, X), chunks=chunks, dtype=volume.dtype, overwrite=True)
        for z in range(Z):
            arr[z] = volume.read(z, z + 1, (0, Y), (0, X))[0, 0]
        return open_volume(dst)
    import h5py
    dst = workdir / "copy.h5"
    with h5py.File(dst, "w") as f:
        ds = f.create_dataset("raw", shape=(Z, Y, X), chunks=chunks, dtype=volume.dtype)
        for z in range(Z):
            ds[z] = volume.read(z, z + 1, (0, Y), (0, X))[0, 0]
    return open_volume(f"{dst}:raw")


def _instances(dst: Path, workers: int, threads: int, client=None) -> dict:
    """The instance step on the segmentation ``dst`` (on the open cluster of ``client``, if given): its wall and
    CPU seconds and its number of objects."""
    from ..segment.instances import label_instances
    t0, c0 = time.perf_counter(), _cpu_seconds(client)
    res = label_instances(dst, workers=workers, threads=threads, progress=False)
    return {"instances_seconds": round(time.perf_counter() - t0, 3),
            "instances_cpu_seconds": round(_cpu_seconds(client) - c0, 2), "instances_objects": res.n_objects,
            "instances_cpu_by_pass": {k: round(v, 2) for k, v in res.cpu_seconds.items()}}


def _instance_summary(records: list[dict], seconds: float, cpu_seconds: float) -> dict:
    """Medians of the instance step over ``records`` and its share of segment's (median) wall and CPU time."""
    ti = statistics.median(r["instances_seconds"] for r in records)
    ci = statistics.median(r["instances_cpu_seconds"] for r in records)
    return {"instances_seconds": round(ti, 2), "instances_cpu_seconds": round(ci, 2),
            "instances_share": round(ti / seconds, 4), "instances_cpu_share": round(ci / cpu_seconds, 4),
            "instances_objects": records[0]["instances_objects"],
            "instances_cpu_by_pass": {k: round(statistics.median(r["instances_cpu_by_pass"].get(k, 0.0)
                                                                 for r in records), 2)
                                      for k in records[0]["instances_cpu_by_pass"]}}


def _model_net(model, net_name: str, tmp: Path):
    """(model file, net, the net's name or file for the engine cases): ``model`` and its net written as a
    network file, or a ``net_name`` net of random weights saved in ``tmp``."""
    import json

    from ..arch import load_net
    from ..model import Model, load_model, save_model
    from ..params import init_params
    if model is not None:
        net = load_model(model).net
        spec = tmp / "net.json"
        spec.write_text(json.dumps(net.to_dict()))
        return Path(model), net, str(spec)
    net = load_net(net_name)
    path = tmp / "model.safetensors"
    save_model(Model(net, init_params(net, 0), normalisation={"mean": [128.0], "std": [50.0]}), path)
    return path, net, net_name


def run(source, *, net_name: str = "n3", size=(512, 512), block=None, workers=None, threads=None,
        repeat: int = 2, engine_repeat: int = 3, workdir=None, instances: bool = False, model=None,
        emit=None) -> list[dict]:
    """Run the segment benchmark (see the module doc) with a ``net_name`` net of random weights (the speed does
    not depend on them) or the ``model`` file; returns (and emits) the records. Outputs go to a temporary folder
    in ``workdir``."""
    from ..cluster import choose_layout, shared_runner
    from ..segment.pyramid import auto_levels
    from ..segment.blocks import default_block
    from ..segment.run import segment
    from ..data.volume import open_volume

    records = []

    def out(rec):
        records.append(rec)
        if emit:
            emit(rec)
        return rec

    volume = open_volume(source)
    from .. import _safety  # the outputs' temporary folder: never inside the volume benchmarked
    _safety.check_outputs([("bench work folder", Path(workdir or tempfile.gettempdir()) / "mpfpipe-segbench-*",
                            ("empty",))], inputs=[volume.path])
    workers, threads = choose_layout(workers, threads)
    T = workers * threads
    with tempfile.TemporaryDirectory(dir=workdir, prefix="mpfpipe-segbench-") as tmp:
        tmp = Path(tmp)
        model, net, net_name = _model_net(model, net_name, tmp)
        block = tuple(block or default_block(net.ndim))
        engines = [engine_rate(net_name, size, T, engine_repeat)]
        levels = auto_levels(volume.shape)
        runs, cpus = {1: [], levels: []}, {1: [], levels: []}
        for i in range(repeat):
            for lv in runs:
                dst = tmp / f"seg-{lv}-{i}.ome.zarr"
                both = instances and lv == levels  # then as `segment --instances`: both steps on one cluster
                t0, c0 = time.perf_counter(), _cpu_seconds()
                with shared_runner(workers, threads) if both else contextlib.nullcontext() as runner:
                    client = runner.client if both else None
                    res = segment(model, volume, dst, block=block, workers=workers, threads=threads,
                                  progress=False, levels=lv)
                    wall, cpu = time.perf_counter() - t0, _cpu_seconds(client) - c0
                    timed = _instances(dst, workers, threads, client) if both else {}
                runs[lv].append((wall, res))
                cpus[lv].append(cpu)
                out({"case": "segment", "volume": list(volume.shape), "block": list(block), "workers": workers,
                     "threads": threads, "levels": lv, "seconds": round(wall, 3), "cpu_seconds": round(cpu, 2),
                     "voxels_per_s": round(res.voxels / wall, 1), "block_cpu_seconds": round(res.cpu_seconds, 2),
                     "pyramid_cpu_seconds": round(res.pyramid_cpu_seconds, 2),
                     "forward_seconds": round(res.forward_seconds, 2), "io_seconds": round(res.io_seconds, 2),
                     "load_average": [round(x, 2) for x in os.getloadavg()],  # others' jobs distort the wall time
                     "peak_memory_per_worker_mib": round(max(res.peak_memory_per_worker.values()) / 2**20, 1),
                     **timed})
                shutil.rmtree(dst, ignore_errors=True)
        engines.append(engine_rate(net_name, size, T, engine_repeat))
        eng = statistics.median(e["voxels_per_s"] for e in engines)
        eng_cpu = statistics.median(e["cpu_seconds_per_voxel"] for e in engines)
        c1, cl = statistics.median(cpus[1]), statistics.median(cpus[levels])
        for e in engines:
            out(e)
        yx = tuple(min(int(b), n) for b, n in zip(block[1:], volume.shape[1:]))
        at_block = None
        if yx != tuple(size):
            at_block = out({**engine_rate(net_name, yx, T, engine_repeat), "case": "engine_at_block"})
        t1 = statistics.median(w for w, _ in runs[1])
        tl = statistics.median(w for w, _ in runs[levels])
        vox = runs[1][0][1].voxels
        inst = [r for r in records if "instances_seconds" in r]
        out({"case": "segment_summary", "volume": list(volume.shape), "net": net.name, "threads": T,
             "engine_voxels_per_s": round(eng, 1), "segment_voxels_per_s": round(vox / t1, 1),
             "ratio": round(vox / t1 / eng, 4), "levels": levels,
             "segment_pyramid_voxels_per_s": round(vox / tl, 1), "ratio_with_pyramid": round(vox / tl / eng, 4),
             "block": list(block),
             **({"engine_at_block_voxels_per_s": at_block["voxels_per_s"],
                 "ratio_at_block": round(vox / t1 / at_block["voxels_per_s"], 4),
                 "ratio_with_pyramid_at_block": round(vox / tl / at_block["voxels_per_s"], 4)} if at_block else {}),
             "pyramid_cost": round(tl / t1 - 1, 4), "seconds": round(t1, 2), "seconds_with_pyramid": round(tl, 2),
             "cpu_ratio": round(eng_cpu * vox / c1, 4), "pyramid_cpu_cost": round(cl / c1 - 1, 4),
             "cpu_seconds": round(c1, 2), "cpu_seconds_with_pyramid": round(cl, 2),
             "peak_memory_per_worker_mib": round(max(max(r.peak_memory_per_worker.values())
                                                     for rs in runs.values() for _, r in rs) / 2**20, 1),
             **(_instance_summary(inst, tl, cl) if inst else {})})
        other = _copy(volume, tmp)
        for v in (volume, other):
            out(read_rate(v, block, net.halo))
    return records
