"""``mpfpipe bench --segment``: segment against the engine, the pyramid's cost, Zarr vs HDF5 reads (structure
and arithmetic of the records; no timing assertions)."""
import json

import numpy as np
import zarr
from click.testing import CliRunner

from mpfpipe.cli import cli


def test_segment_bench_records(tmp_path):
    vol = np.random.default_rng(0).integers(0, 255, (1, 270, 261)).astype(np.uint8)
    zarr.save_array(str(tmp_path / "v.zarr"), vol)
    res = CliRunner().invoke(cli, ["bench", "--segment", str(tmp_path / "v.zarr"), "--net", "steel", "--size",
                                   "40x40", "--repeat", "1", "--segment-repeat", "1", "--workers", "1",
                                   "--threads", "1", "--workdir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.output.strip().splitlines()]
    # the default block (1, 1024, 1024) is the whole 270 x 261 slice here: not --size, so the engine is also
    # timed on one block
    assert [r["case"] for r in rows] == ["segment", "segment", "engine", "engine", "engine_at_block",
                                         "segment_summary", "read", "read"]
    seg = {r["levels"]: r for r in rows if r["case"] == "segment"}
    assert set(seg) == {1, 2} and seg[1]["pyramid_cpu_seconds"] == 0 < seg[2]["pyramid_cpu_seconds"]
    # the run's CPU time counts the worker processes (children of this one) beyond their block tasks
    assert all(r["cpu_seconds"] > r["block_cpu_seconds"] + r["pyramid_cpu_seconds"] for r in seg.values())
    at_block, summary = rows[4:6]
    assert at_block["size"] == "270x261" and summary["block"] == [1, 1024, 1024]
    assert np.isclose(summary["ratio_at_block"], summary["segment_voxels_per_s"] / at_block["voxels_per_s"],
                      atol=1e-4)
    assert np.isclose(summary["ratio_with_pyramid_at_block"],
                      summary["segment_pyramid_voxels_per_s"] / at_block["voxels_per_s"], atol=1e-4)
    engine = sorted(r["voxels_per_s"] for r in rows if r["case"] == "engine")
    assert summary["engine_voxels_per_s"] == round((engine[0] + engine[1]) / 2, 1)
    assert summary["threads"] == 1 and summary["levels"] == 2 and summary["peak_memory_per_worker_mib"] > 0
    assert np.isclose(summary["segment_voxels_per_s"], vol.size / summary["seconds"], rtol=1e-2)
    assert np.isclose(summary["ratio"], summary["segment_voxels_per_s"] / summary["engine_voxels_per_s"], atol=1e-4)
    assert np.isclose(summary["pyramid_cost"], summary["seconds_with_pyramid"] / summary["seconds"] - 1, atol=1e-2)
    assert np.isclose(summary["pyramid_cpu_cost"], summary["cpu_seconds_with_pyramid"] / summary["cpu_seconds"] - 1,
                      atol=1e-2)
    assert summary["cpu_ratio"] > 0
    assert [r["format"] for r in rows[6:]] == ["zarr", "hdf5"]
    assert all(r["voxels_per_s"] > 0 and r["mib_per_s"] > 0 for r in rows[6:])
    assert [p.name for p in tmp_path.iterdir()] == ["v.zarr"]  # the temporary outputs are gone


def test_segment_bench_times_the_instance_step_with_a_model_file(tmp_path):
    from mpfpipe.arch import preset
    from mpfpipe.model import Model, save_model
    from mpfpipe.params import init_params
    net = preset("steel", n_classes=2)
    save_model(Model(net, init_params(net, 3), class_names=["cell", "membrane"],
                     normalisation={"mean": [128.0], "std": [50.0]}), tmp_path / "m.safetensors")
    vol = np.random.default_rng(1).integers(0, 255, (1, 270, 261)).astype(np.uint8)  # 2 pyramid levels
    zarr.save_array(str(tmp_path / "v.zarr"), vol)
    res = CliRunner().invoke(cli, ["bench", "segment", str(tmp_path / "v.zarr"), "--model",
                                   str(tmp_path / "m.safetensors"), "--instances", "--size", "40x40",
                                   "--engine-repeat", "1", "--repeat", "1", "--workers", "1", "--threads", "1",
                                   "--block", "90x90", "--workdir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.output.strip().splitlines()]
    assert [r["size"] for r in rows if r["case"] == "engine_at_block"] == ["90x90"]
    assert all(r["block"] == [1, 90, 90] for r in rows if r["case"] in ("segment", "segment_summary"))
    seg = {r["levels"]: r for r in rows if r["case"] == "segment"}
    assert set(seg) == {1, 2} and "instances_seconds" not in seg[1]  # timed on the output with the pyramid
    inst = seg[2]
    assert inst["instances_seconds"] > 0 and inst["instances_cpu_seconds"] > 0 and inst["instances_objects"] >= 1
    summary = next(r for r in rows if r["case"] == "segment_summary")
    assert summary["net"] == net.name and summary["instances_objects"] == inst["instances_objects"]
    # one run each: the shares are the instance step's seconds over that segment run's (both rounded in the JSON)
    assert np.isclose(summary["instances_share"], inst["instances_seconds"] / inst["seconds"], rtol=1e-2)
    assert np.isclose(summary["instances_cpu_share"], inst["instances_cpu_seconds"] / inst["cpu_seconds"], rtol=1e-2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors", "v.zarr"]
