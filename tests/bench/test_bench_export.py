"""``mpfpipe bench export``: a quick run (one small net, one slice, no cluster); structure and arithmetic."""
import json

import pytest
from click.testing import CliRunner

from mpfpipe.cli import cli

pytest.importorskip("onnxruntime", reason="onnxruntime (the test extra) runs the exported graph")


def test_export_bench_record():
    res = CliRunner().invoke(cli, ["bench", "export", "--net", "steel", "--size", "40x48", "--slices", "1",
                                   "--repeat", "1", "--threads", "1", "--no-cluster"])
    assert res.exit_code == 0, res.output
    (rec,) = [json.loads(line) for line in res.output.strip().splitlines()]
    assert (rec["net"], rec["size"], rec["slices"], rec["repeat"], rec["threads"]) == ("steel", [40, 48], 1, 1, 1)
    assert rec["segment_cluster_s_per_slice"] is None and rec["onnx_bytes"] > 0
    assert rec["onnxruntime_over_segment"] == rec["onnxruntime_s_per_slice"] / rec["segment_s_per_slice"]
