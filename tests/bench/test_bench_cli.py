"""``mpfpipe bench NAME``: one launcher for every benchmark, the old single command's flags as aliases."""
import pytest
from click.testing import CliRunner

from mpfpipe.cli import cli
from mpfpipe.cli.bench import BENCHMARKS, _legacy


@pytest.mark.parametrize("old, new", [
    ([], ["engine"]),
    (["--net", "n4", "--size", "64x64"], ["engine", "--net", "n4", "--size", "64x64"]),
    (["--distributed", "--simulate", "--workers", "2"], ["distributed", "--simulate", "--workers", "2"]),
    (["--segment", "v.zarr", "--repeat", "3", "--segment-repeat", "1", "--net", "n3"],
     ["segment", "v.zarr", "--engine-repeat", "3", "--repeat", "1", "--net", "n3"]),
    (["--net=steel", "--segment=v.zarr", "--repeat=2"], ["segment", "v.zarr", "--net=steel", "--engine-repeat=2"]),
])
def test_the_old_flags_become_subcommands(old, new):
    assert _legacy(old) == new


def test_every_benchmark_is_a_subcommand_with_help():
    group = cli.commands["bench"]
    assert sorted(group.commands) == sorted(BENCHMARKS)
    for name in BENCHMARKS:
        res = CliRunner().invoke(cli, ["bench", name, "--help"])
        assert res.exit_code == 0 and "--config" in res.output, res.output


def test_an_option_of_another_benchmark_is_a_usage_error():
    res = CliRunner().invoke(cli, ["bench", "--simulate"])  # --simulate belongs to distributed
    assert res.exit_code == 2 and "No such option '--simulate'" in res.output


@pytest.mark.parametrize("args", [["export", "--net", "n337"], ["distributed", "--net", "aniso"],
                                  ["segment", "v.zarr", "--net", "n337"]])
def test_the_benchmarks_of_2d_jobs_refuse_a_3d_net_in_one_line(args):
    res = CliRunner().invoke(cli, ["bench", *args])
    assert res.exit_code == 2 and f"is 3D: `mpfpipe bench {args[0]}` times 2D nets" in res.output
    assert "Traceback" not in res.output
