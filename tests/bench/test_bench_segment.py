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
    assert [r["case"] for r in rows] == ["segment", "segment", "engine", "engine", "segment_summary", "read", "read"]
    seg = {r["levels"]: r for r in rows if r["case"] == "segment"}
    assert set(seg) == {1, 2} and seg[1]["pyramid_cpu_seconds"] == 0 < seg[2]["pyramid_cpu_seconds"]
    # the run's CPU time counts the worker processes (children of this one) beyond their block tasks
    assert all(r["cpu_seconds"] > r["block_cpu_seconds"] + r["pyramid_cpu_seconds"] for r in seg.values())
    summary = rows[4]
    engine = sorted(r["voxels_per_s"] for r in rows if r["case"] == "engine")
    assert summary["engine_voxels_per_s"] == round((engine[0] + engine[1]) / 2, 1)
    assert summary["threads"] == 1 and summary["levels"] == 2 and summary["peak_memory_per_worker_mib"] > 0
    assert np.isclose(summary["segment_voxels_per_s"], vol.size / summary["seconds"], rtol=1e-2)
    assert np.isclose(summary["ratio"], summary["segment_voxels_per_s"] / summary["engine_voxels_per_s"], atol=1e-4)
    assert np.isclose(summary["pyramid_cost"], summary["seconds_with_pyramid"] / summary["seconds"] - 1, atol=1e-2)
    assert np.isclose(summary["pyramid_cpu_cost"], summary["cpu_seconds_with_pyramid"] / summary["cpu_seconds"] - 1,
                      atol=1e-2)
    assert summary["cpu_ratio"] > 0
    assert [r["format"] for r in rows[5:]] == ["zarr", "hdf5"]
    assert all(r["voxels_per_s"] > 0 and r["mib_per_s"] > 0 for r in rows[5:])
    assert [p.name for p in tmp_path.iterdir()] == ["v.zarr"]  # the temporary outputs are gone
