"""`mpfpipe bench peers` (mpfpipe/bench/peers.py): the engine beside onnxruntime and PyTorch."""
import json

import pytest
from click.testing import CliRunner

from mpfpipe.arch import preset
from mpfpipe.cli import cli
from mpfpipe.cost import flops


def _torch_python():
    """A Python with torch, if this machine has one (it is never a dependency): this one, or the one named by
    MPFPIPE_TORCH_PYTHON."""
    import os
    import subprocess
    import sys
    for python in (os.environ.get("MPFPIPE_TORCH_PYTHON"), sys.executable):
        if python and subprocess.run([python, "-c", "import torch"], capture_output=True).returncode == 0:
            return python
    return None


def test_bench_peers_runs_the_engine_onnxruntime_and_torch_side_by_side(tmp_path):
    """The quick form of `mpfpipe bench --peers`: every line names its job, the engine's and onnxruntime's times are
    measured numbers, each ratio is the median of its rounds' own ratios (times of one round, not of different
    minutes), and a peer that is absent is reported as absent with its reason."""
    import statistics
    torch_python = _torch_python()
    args = ["bench", "--peers", "--net", "steel", "--size", "40x36", "--repeat", "1", "--threads", "1",
            "--rounds", "3"]
    res = CliRunner().invoke(cli, args + (["--torch-python", torch_python] if torch_python else []))
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.output.strip().splitlines()]
    assert rows[0]["case"] == "matmul_peak" and rows[0]["gflops"] > 0
    assert rows[1]["case"] == "fma_peak" and rows[1]["threads"] == 1 and rows[1]["gflops"] > 0
    peers = rows[2:]
    assert [(r["net"], r["size"], r["phase"], r["threads"], r["rounds"]) for r in peers] == [
        ("steel", "40x36", "infer", 1, 3), ("steel", "40x36", "train", 1, 3)]
    net = preset("steel")
    for r in peers:
        assert len(r["per_round"]) == 3 and all(p["engine"] > 0 for p in r["per_round"])
        assert r["engine_s"] == pytest.approx(statistics.median(p["engine"] for p in r["per_round"]), abs=1e-6)
        assert r["gflop"] == pytest.approx(flops(net, True, (40, 36), r["phase"]) / 1e9, abs=5e-4)
        share = flops(net, True, (40, 36), r["phase"]) / 1e9 / r["engine_s"] / rows[0]["gflops"]
        assert r["engine_share_of_peak"] == pytest.approx(share, rel=0.01, abs=1e-4)
        assert r["fma_peak_gflops"] == rows[1]["gflops"]
        assert r["engine_share_of_fma_peak"] == pytest.approx(share * rows[0]["gflops"] / rows[1]["gflops"], rel=0.01,
                                                              abs=1e-4)
        peers_here = ["torch"] + (["onnxruntime"] if r["phase"] == "infer" else [])
        for peer in peers_here:
            if peer == "torch" and not torch_python:
                assert r["torch_s"] is None and r["engine_over_torch"] is None and "not importable" in r["torch"]
                continue
            ratios = sorted(p["engine"] / p[peer] for p in r["per_round"])
            assert r[f"{peer}_s"] == pytest.approx(statistics.median(p[peer] for p in r["per_round"]), abs=1e-6)
            assert r[f"engine_over_{peer}"] == pytest.approx(ratios[1], rel=0.01)
            assert r[f"engine_over_{peer}_range"] == pytest.approx([ratios[0], ratios[2]], rel=0.01)
        if r["phase"] == "train":
            assert "onnxruntime_s" not in r
    infer = peers[0]
    assert infer["onnxruntime_s"] > 0 and infer["onnxruntime"].startswith("onnxruntime ")
    bad = CliRunner().invoke(cli, ["bench", "peers", "--torch-python", str(tmp_path)])  # a folder, not a Python
    assert bad.exit_code == 2
    bad = CliRunner().invoke(cli, ["bench", "peers", "--rounds", "0"])
    assert bad.exit_code == 2 and "rounds" in bad.output


def test_bench_peers_on_a_3d_net_runs_onnxruntime_on_the_3d_export_and_torch_conv3d(tmp_path):
    """A 3D net (ZxYxX size): onnxruntime runs the 3D export, PyTorch conv3d / max_pool3d with per-axis dilations;
    the job's GFLOP are the 3D net's. A 2D size for a 3D net is refused in one line."""
    net_file = tmp_path / "tiny3.yaml"
    net_file.write_text("layers:\n  - {type: conv, k: [2, 3, 3], maps: 6}\n  - {type: pool, p: [2, 2, 2]}\n"
                        "  - {type: conv, k: [1, 2, 2], maps: 6}\n  - {type: fc, n: 2}\n")
    torch_python = _torch_python()
    args = ["bench", "peers", "--net", str(net_file), "--size", "4x20x18", "--repeat", "1", "--threads", "1",
            "--rounds", "1"]
    res = CliRunner().invoke(cli, args + (["--torch-python", torch_python] if torch_python else []))
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.output.strip().splitlines()][2:]
    assert [(r["size"], r["phase"]) for r in rows] == [("4x20x18", "infer"), ("4x20x18", "train")]
    from mpfpipe.arch import load_net
    net = load_net(str(net_file))
    for r in rows:
        assert r["gflop"] == pytest.approx(flops(net, True, (4, 20, 18), r["phase"]) / 1e9, abs=5e-4)
        if torch_python:
            assert r["torch_s"] > 0, r["torch"]
    assert rows[0]["onnxruntime_s"] > 0 and rows[0]["onnxruntime"].startswith("onnxruntime ")
    bad = CliRunner().invoke(cli, ["bench", "peers", "--net", str(net_file), "--size", "20x18"])
    assert bad.exit_code == 2 and "is 3D: give ZxYxX sizes" in bad.output


def test_fma_peak_counts_the_flops_it_runs():
    """`fma_peak`: the GFLOP/s are the loop's own count (threads x iterations x 12 chains x 16 float32 lanes x 2
    flops) over its median time, for 1 and 2 threads."""
    from mpfpipe.bench import _fma
    for threads in (1, 2):
        r = _fma.fma_peak(threads, seconds=0.02, repeat=3)
        assert r["case"] == "fma_peak" and r["threads"] == threads and r["iterations"] >= 1000
        flop = threads * r["iterations"] * 12 * 16 * 2  # kernels._peak: 12 chains of 16 float32 lanes
        assert r["gflops"] == pytest.approx(flop / r["seconds"] / 1e9, rel=1e-3)
