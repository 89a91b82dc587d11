"""``mpfpipe bench data``: ingest and read of the real ISBI 2012 stack (the quick one of the three)."""
import json

import tifffile

from click.testing import CliRunner

from mpfpipe.cli import cli


def test_data_bench_on_isbi(shared_data):
    res = CliRunner().invoke(cli, ["bench", "data", str(shared_data), "--dataset", "isbi2012", "--json"])
    assert res.exit_code == 0, res.output
    (row,) = [json.loads(line) for line in res.output.strip().splitlines()]
    n, h, w = tifffile.imread(shared_data / "isbi2012" / "train-volume.tif").shape
    assert (row["name"], row["n"]) == ("isbi2012", n)
    assert row["raw_mb"] == n * h * w / 1e6  # uint8 slices, one channel
    assert row["img_s"] == row["n"] / row["s"] and row["disk_mb"] > 0 and row["read_ms"] > 0
    table = CliRunner().invoke(cli, ["bench", "data", str(shared_data), "--dataset", "isbi2012"])
    assert table.exit_code == 0 and table.output.splitlines()[1].split()[:2] == ["isbi2012", str(n)]


def test_no_data_is_one_line(tmp_path):
    res = CliRunner().invoke(cli, ["bench", "data", str(tmp_path / "none")])
    assert res.exit_code != 0 and f"no data at {tmp_path / 'none'}" in str(res.exception)
