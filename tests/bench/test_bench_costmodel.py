"""The cost model of a distributed evaluation: the fit recovers known terms from rows made with them, and
``mpfpipe bench costmodel --rows`` fits saved rows and projects them."""
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from mpfpipe.arch import load_net
from mpfpipe.bench.costmodel import TERMS, fit, project
from mpfpipe.cli import cli
from mpfpipe.params import n_params
from mpfpipe.train.chunks import FANIN, tree_levels

TRUE = dict(zip(TERMS, (0.02, 0.0015, 0.004, 2e-9)))


def _row(workers, chunks, images, per_image, param_bytes):
    levels = len(tree_levels(chunks, FANIN))
    tasks = chunks + sum(sum(1 for a, b in g if b - a > 1) for g in tree_levels(chunks, FANIN))
    imbalance = math.ceil(chunks / workers) / (chunks / workers) if chunks >= workers else workers / chunks
    overhead = (TRUE["per_eval"] + TRUE["per_task"] * tasks + TRUE["per_worker"] * workers
                + TRUE["per_byte_stage"] * param_bytes * (1 + levels))
    return {"workers": workers, "chunks": chunks, "tasks": tasks, "images": images, "param_bytes": param_bytes,
            "task_seconds_per_image": per_image,
            "seconds_per_eval": images * per_image / workers * imbalance + overhead}


ROWS = [_row(w, c, n, s, b) for w, c, n, s, b in [(2, 8, 512, 0.005, 8_528), (4, 16, 4096, 0.005, 8_528),
                                                  (8, 8, 512, 0.005, 8_528), (16, 64, 4096, 0.005, 8_528),
                                                  (4, 12, 128, 0.05, 1_140_000), (16, 12, 128, 0.05, 1_140_000)]]


def test_the_fit_recovers_the_terms_it_was_made_with():
    model = fit(ROWS)
    assert model["rows"] == 6 and model["rms_residual_s"] < 1e-12
    for k in TERMS:
        assert model["terms"][k] == pytest.approx(TRUE[k], rel=1e-6)


def test_costmodel_cli_fits_saved_rows(tmp_path):
    (tmp_path / "rows.json").write_text(json.dumps({"measured": ROWS}))
    res = CliRunner().invoke(cli, ["bench", "costmodel", "--rows", str(tmp_path / "rows.json"), "--out",
                                   str(tmp_path / "fit.json"), "--steel-seconds", "0.01"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(line) for line in res.output.strip().splitlines()]
    assert list(lines[0]) == ["model"] and len(lines) == 1 + 9  # 3 steel + 6 n4 projections
    saved = json.loads((tmp_path / "fit.json").read_text())
    assert saved["measured"] == ROWS and saved["projections"] == lines[1:]
    want = project(saved["model"], load_net("steel"), (137, 60), 10_000, 16, 0.01)
    assert lines[1] == want and want["workers"] == 16 and want["images"] == 10_000
    levels = len(tree_levels(want["chunks"], FANIN))
    features = [1.0, want["tasks"], 16, 8 * n_params(load_net("steel")) * (1 + levels)]
    overhead = float(np.dot([saved["model"]["terms"][k] for k in TERMS], features))
    assert want["overhead_s"] == round(overhead, 4)
