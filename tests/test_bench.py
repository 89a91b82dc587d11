import json

from click.testing import CliRunner

from mpfpipe.bench import flops
from mpfpipe.arch import preset
from mpfpipe.cli import cli


def test_flop_count_of_n4_dense_job():
    # conv2 of n4 on a 512x512 image: 4 fragments of 297x297 outputs, 5x5x48x48 MACs each
    net = preset("n4")
    fl = flops(net, True, (512, 512), "infer")
    assert 2 * 4 * 297 * 297 * 25 * 48 * 48 < fl < 400e9


def test_bench_cli_prints_one_json_object_per_case():
    res = CliRunner().invoke(cli, ["bench", "--net", "steel", "--size", "20x17", "--repeat", "1", "--no-peak",
                                   "--batch", "8"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.output.strip().splitlines()]
    assert [(r["mode"], r["phase"]) for r in rows] == [("mpf", "train"), ("mpf", "infer"), ("patch", "train"),
                                                        ("patch", "infer")]
    for r in rows:
        assert {"net", "size", "mode", "phase", "seconds", "patches_per_s", "gflops", "peak_rss_mib",
                "threads"} <= set(r)
        assert r["seconds"] > 0 and r["peak_rss_mib"] > 0
    bad = CliRunner().invoke(cli, ["bench", "--size", "20by17"])
    assert bad.exit_code == 2 and "not a size" in bad.output
