"""``mpfpipe bench distributed --simulate``: a quick run on a real one-worker LocalCluster (structure and
arithmetic of the rows; no timing assertions)."""
import json

from click.testing import CliRunner

from mpfpipe.cli import cli


def test_a_simulated_evaluation_row_adds_up():
    res = CliRunner().invoke(cli, ["bench", "distributed", "--simulate", "--workers", "1", "--threads", "1",
                                   "--images", "6", "--repeat", "2", "--task-seconds", "0.001"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.output.strip().splitlines()]
    assert [r["eval"] for r in rows] == [1, 2, "median"]
    for r in rows:
        assert (r["simulate"], r["workers"], r["threads"], r["net"], r["size"], r["images"]) == (
            True, 1, 1, "steel", "137x60", 6)
        assert r["task_seconds_per_image"] == 0.001
    for r in rows[:2]:
        parts = r["broadcast"] + r["compute"] + r["reduction"] + r["driver"] + r["idle"]
        assert abs(parts - r["seconds_per_eval"]) <= 3e-4  # the printed parts are rounded to 0.1 ms
        # efficiency = images x seconds per image / workers / seconds, both rounded when printed
        spe = r["seconds_per_eval"]
        assert abs(r["efficiency"] - 6 * 0.001 / spe) <= 5e-5 + r["efficiency"] * 5e-5 / (spe - 5e-5)
    a, b = (r["seconds_per_eval"] for r in rows[:2])
    assert rows[2]["seconds_per_eval"] == (a + b) / 2  # the median of two
