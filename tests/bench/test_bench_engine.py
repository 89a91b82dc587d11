import json

import pytest
from click.testing import CliRunner

from mpfpipe.arch import preset
from mpfpipe.bench import flops
from mpfpipe.cli import cli


def _n4_dense_macs():
    """n4 (95x95, stride 16) on 512x512, re-derived by hand: the image is mirror-padded to 512 + 94 = 606,
    every 2x2 pool multiplies the fragments by 4 and maps (n - 1) // 2 rows; fc1 is a 3x3 conv of 48 -> 200."""
    return [603 * 603 * 4 * 4 * 1 * 48,               # conv1 4x4, 1 fragment
            4 * 297 * 297 * 5 * 5 * 48 * 48,          # conv2 5x5 on 301x301, 4 fragments
            16 * 145 * 145 * 4 * 4 * 48 * 48,         # conv3 4x4 on 148x148, 16 fragments
            64 * 69 * 69 * 4 * 4 * 48 * 48,           # conv4 4x4 on 72x72, 64 fragments
            256 * 32 * 32 * 3 * 3 * 48 * 200,         # fc1 as 3x3 conv on 34x34, 256 fragments
            256 * 32 * 32 * 1 * 1 * 200 * 2]          # fc2, one output per pixel: 256 * 32 * 32 = 512 * 512


def test_flop_count_of_n4_dense_job_is_exact():
    net = preset("n4")
    macs = _n4_dense_macs()
    assert flops(net, True, (512, 512), "infer") == 2 * sum(macs)
    # training: forward, weight gradients of every layer, input gradients of all but the first
    assert flops(net, True, (512, 512), "train") == 2 * (2 * sum(macs) + sum(macs[1:]))
    # patch mode: one 95x95 window per patch, no fragments
    assert flops(net, False, (512, 512), "infer", batch=3) == 2 * 3 * (
        92 * 92 * 16 * 48 + 42 * 42 * 25 * 48 * 48 + 18 * 18 * 16 * 48 * 48 + 6 * 6 * 16 * 48 * 48
        + 1 * 9 * 48 * 200 + 200 * 2)


def test_bench_cli_prints_one_json_object_per_case():
    res = CliRunner().invoke(cli, ["bench", "--net", "steel", "--size", "20x17", "--repeat", "1", "--no-peak",
                                   "--batch", "8"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.output.strip().splitlines()]
    assert [(r["mode"], r["phase"]) for r in rows] == [("mpf", "train"), ("mpf", "infer"), ("patch", "train"),
                                                        ("patch", "infer")]
    net = preset("steel")
    for r in rows:
        mpf = r["mode"] == "mpf"
        assert (r["net"], r["size"], r["repeat"]) == ("steel", "20x17" if mpf else "8x34x34", 1)
        assert r["seconds"] > 0 and r["peak_rss_mib"] > 0
        # the rates are the counts over the measured time (up to the rounding of the printed values)
        assert r["patches_per_s"] == pytest.approx((20 * 17 if mpf else 8) / r["seconds"], rel=2e-3, abs=0.1)
        fl = flops(net, mpf, (20, 17), r["phase"], 1 if mpf else 8)
        assert r["gflops"] == pytest.approx(fl / r["seconds"] / 1e9, rel=2e-3, abs=0.006)
    bad = CliRunner().invoke(cli, ["bench", "--size", "20by17"])
    assert bad.exit_code == 2 and "not a size" in bad.output



TINY3 = "layers:\n  - {type: conv, k: [2, 3, 3], maps: 4}\n  - {type: pool, p: [2, 2, 2]}\n  - {type: fc, n: 2}\n"


def test_flop_count_of_a_3d_dense_job_by_hand(tmp_path):
    from mpfpipe.arch import load_net
    (tmp_path / "tiny3.yaml").write_text(TINY3)
    net = load_net(tmp_path / "tiny3.yaml")  # window 3x4x4, stride 2x2x2
    # 3x5x4 -> output padded to 4x6x4, input 6x9x7; conv 2x3x3 -> 5x7x5; 8 fragments of 2x3x2; fc1 1x1x1, 4 -> 2
    assert flops(net, True, (3, 5, 4), "infer") == 2 * (5 * 7 * 5 * 18 * 4 + 8 * 2 * 3 * 2 * 4 * 2)
    # patch mode: conv on the 3x4x4 window -> 2x2x2, pool -> 1x1x1
    assert flops(net, False, (3, 5, 4), "infer", batch=3) == 2 * 3 * (2 * 2 * 2 * 18 * 4 + 4 * 2)


def test_bench_takes_zyx_sizes_for_a_3d_net(tmp_path):
    (tmp_path / "tiny3.yaml").write_text(TINY3)
    net = str(tmp_path / "tiny3.yaml")
    res = CliRunner().invoke(cli, ["bench", "--net", net, "--size", "3x5x4", "--repeat", "1", "--no-peak",
                                   "--batch", "3", "--phase", "infer"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.output.strip().splitlines()]
    assert [(r["mode"], r["size"]) for r in rows] == [("mpf", "3x5x4"), ("patch", "3x3x4x4")]
    assert rows[0]["patches_per_s"] == pytest.approx(60 / rows[0]["seconds"], rel=2e-3, abs=0.1)
    bad = CliRunner().invoke(cli, ["bench", "--net", net, "--size", "20x17"])
    assert bad.exit_code == 2 and "tiny3.yaml is 3D: give ZxYxX sizes, not 20x17" in bad.output
    bad = CliRunner().invoke(cli, ["bench", "--net", "steel", "--size", "3x5x4"])
    assert bad.exit_code == 2 and "net steel is 2D: give HxW sizes" in bad.output
