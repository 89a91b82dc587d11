"""A workflow whose segment step adds the instances and whose evaluate step reports their scores beside the
thresholded map's (as workflows/isbi2012-membranes.yaml does), run for real on synthetic EM slices."""
from __future__ import annotations

import json

import pytest
import yaml

from mpfpipe.cli import main

WORKFLOW = {
    "name": "instances-check",
    "params": {"instances": True},
    "steps": [
        {"ingest": {"id": "data", "source": "synthetic:em", "n_images": 2, "size": "64x64", "seed": 0,
                    "split": [0.5, 0.5]}},
        {"ingest": {"id": "test", "source": "synthetic:em", "n_images": 2, "size": "64x64", "seed": 1000}},
        {"train": {"dataset": "data", "net": "steel", "optimizer": "lbfgs", "epochs": 2, "seed": 0}},
        {"segment": {"input": "data", "block": [1, 32, 32], "instances": "${instances}"}},
        {"evaluate": {"truth": "data", "overlays": 0, "detection": False, "instances": "${instances}",
                      "tune_instances": True}},
    ],
}


def test_workflow_segments_instances_and_reports_them_side_by_side(tmp_path, capsys):
    wf = tmp_path / "wf.yaml"
    wf.write_text(yaml.safe_dump(WORKFLOW, sort_keys=False))
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as exc:
        main(["run", str(wf), "--out", str(run), "--workers", "1", "--threads", "1", "--no-progress",
              "--set", "instances={min_size: 10}"])
    out, err = capsys.readouterr()
    assert exc.value.code == 0, out + err
    report = json.loads((run / "report.json").read_text())
    inst = report["instances"]
    assert inst["mode"].startswith("per section") and inst["n_slices"] == 2
    for key in ("arand", "voi_split", "voi_merge", "cremi", "v_rand_thinned", "v_info_thinned"):
        assert inst[key] >= 0, key
    assert 0 <= inst["v_rand_thinned"] <= 1 and 0 <= report["isbi2012"]["v_rand_thinned"] <= 1
    summary = json.loads((run / "summary.json").read_text())
    seg = next(s for s in summary["steps"] if s["kind"] == "segment")["result"]
    assert seg["instances"]["n_objects"] > 0
    chosen = report["instances_chosen"]
    # the quantile grid (32), then the learned score fitted on the train split: 4 fragment settings x 5 thresholds
    learned = 20 if chosen["learned"]["tried"] else 0
    assert chosen["chosen_on"] == "val" and chosen["images"] == [1] and len(chosen["grid"]) == 32 + learned
    assert chosen["v_rand_thinned"] == max(g["v_rand_thinned"] for g in chosen["grid"])
    from mpfpipe.model import load_model  # written into the model trained here, for segment --instances
    tuned = load_model(chosen["model"]).instances
    assert {k: tuned[k] for k in chosen["parameters"]} == chosen["parameters"]
    assert chosen["model"] == next(s for s in summary["steps"] if s["kind"] == "train")["result"]["model"]
    # the instances scored are those of the chosen parameters: made again with them when the segment step's differ
    from mpfpipe.segment import instance_store
    made = instance_store.labels_state(seg["output"])["settings"]
    assert {k: made[k] for k in chosen["parameters"]} == chosen["parameters"]
    ev = next(s for s in summary["steps"] if s["kind"] == "evaluate")["result"]
    assert ev["instances_relabelled"]["n_objects"] > 0  # the step's min_size 10 is not the chosen one
    md = (run / "summary.md").read_text()
    assert "thinned V_rand" in md and "instances: thinned V_rand" in md


def test_summary_names_the_lowest_section():
    """summary.md's evaluate line names the section with the lowest thinned V_rand, and its split / merge."""
    from mpfpipe.workflow.runner import summary_markdown
    sections = [{"index": 2, "v_rand_thinned": 0.97, "rand_split": 0.96, "rand_merge": 0.98},
                {"index": 18, "v_rand_thinned": 0.75, "rand_split": 0.99, "rand_merge": 0.6}]
    inst = {"v_rand_thinned": 0.86, "v_info_thinned": 0.9, "arand": 0.1, "voi_split": 0.2, "voi_merge": 0.3,
            "sections": sections}
    s = {"workflow": "w", "file": "w.yaml", "run_dir": "r", "mpfpipe_version": "0", "finished": "now", "seconds": 1.0,
         "params": {}, "steps": [{"step": 1, "kind": "evaluate", "id": "e", "seconds": 1.0,
                                  "result": {"n_images": 2, "pixel_error": 0.1, "instances": inst}}]}
    assert "(lowest: section 18, thinned V_rand 0.75, split / merge 0.99 / 0.6)" in summary_markdown(s)
    inst["sections"] = sections[:1]  # one section: its scores are the line's already
    assert "lowest" not in summary_markdown(s)
