"""The quick-start workflow end to end on a tiny override (real LocalCluster, real steps), then --resume
(every step skipped), a refused rerun, `mpfpipe info` on what it wrote, and --overwrite."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mpfpipe.cli import main

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--set", "n_images=4", "--set", "size=64x64", "--set", "iterations=2", "--set", "test_images=2"]


def run_cli(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_quickstart_tiny_end_to_end(capsys, tmp_path):
    run = tmp_path / "run"
    t0 = time.monotonic()
    code, out, err = run_cli(capsys, "run", str(ROOT / "workflows" / "quickstart.yaml"), *TINY, "--out", str(run),
                             "--workers", "2", "--no-progress")
    assert code == 0, err
    # timing is reported, not asserted (speed is a benchmark's job; a loaded CI machine is slower)
    print(f"tiny quickstart: {time.monotonic() - t0:.0f} s")
    for rel in ("model.safetensors", "train/log.jsonl", "train/loss.png", "segmentation.ome.zarr", "report.json",
                "summary.json", "summary.md", "workflow.json", "data/data.zarr", "data/test.zarr"):
        assert (run / rel).exists(), rel
    overlays = sorted((run / "overlays").glob("*.png"))
    assert len(overlays) == 2 and all(p.stat().st_size > 1000 for p in overlays)
    # the segment step's own overlays (for unlabelled volumes): evenly spaced slices, redrawn from scratch
    from mpfpipe.workflow.steps import _segment_overlays
    stale = tmp_path / "seg-overlays" / "z0099.png"
    stale.parent.mkdir()
    stale.write_bytes(b"old")
    files = _segment_overlays(run / "segmentation.ome.zarr", stale.parent, 2)
    assert [Path(f).name for f in files] == ["z0000.png", "z0001.png"] and not stale.exists()
    assert all(Path(f).stat().st_size > 1000 for f in files)
    report = json.loads((run / "report.json").read_text())
    assert report["n_images"] == 2 and "detection" not in report
    # the report's numbers, recomputed here from the written probabilities and the truth dataset
    import numpy as np
    import zarr

    from mpfpipe.data import open_dataset
    probs = zarr.open_group(str(run / "segmentation.ome.zarr"), mode="r")["0"][...]
    truth = open_dataset(run / "data" / "test.zarr")
    conf = np.zeros((2, 2), np.int64)
    for i in range(truth.n_images):
        h, w = truth.sizes[i]
        t, pred = truth.raw_labels(i), (probs[1, i, :h, :w] > 0.5).astype(np.int64)
        np.add.at(conf, (t[t != 255], pred[t != 255]), 1)
    assert report["confusion"] == conf.tolist() and conf.sum() == 2 * 64 * 64
    assert report["pixel_error"] == pytest.approx(1 - np.trace(conf) / conf.sum(), rel=1e-12)
    assert 0 <= report["rand"]["v_rand"] <= 1
    assert 0 <= report["isbi2012"]["v_rand_thinned"] <= 1 and 0 <= report["isbi2012"]["v_info_thinned"] <= 1
    assert report["voi"]["split"] >= 0 and report["voi"]["merge"] >= 0
    assert "thinned V_rand" in (run / "summary.md").read_text() and "VOI split / merge" in out
    summary = json.loads((run / "summary.json").read_text())
    ev = next(s for s in summary["steps"] if s["kind"] == "evaluate")["result"]
    assert ev["isbi2012"]["v_info_thinned"] == report["isbi2012"]["v_info_thinned"] and "curve" not in ev["isbi2012"]
    assert ev["voi"]["split"] == report["voi"]["split"]
    assert [s["kind"] for s in summary["steps"]] == ["ingest", "ingest", "train", "segment", "evaluate"]
    assert summary["params"]["iterations"] == 2
    assert "| evaluate |" in out and "pixel error" in out
    train = next(s for s in summary["steps"] if s["kind"] == "train")["result"]
    assert train["status"] == "finished" and train["steps"] == 2

    # --resume: everything is done, nothing runs again (no cluster either)
    model_mtime = (run / "model.safetensors").stat().st_mtime_ns
    code, out, err = run_cli(capsys, "run", str(ROOT / "workflows" / "quickstart.yaml"), *TINY, "--out", str(run),
                             "--resume", "--no-progress")
    assert code == 0, err
    assert err.count("done earlier, skipped") == 5 and "cluster:" not in err
    assert (run / "model.safetensors").stat().st_mtime_ns == model_mtime

    # without --resume / --overwrite: refused with one message
    code, _, err = run_cli(capsys, "run", str(ROOT / "workflows" / "quickstart.yaml"), *TINY, "--out", str(run))
    assert code == 1 and err.strip().startswith("error: run folder") and "--resume" in err

    # --resume with other parameters: refused
    code, _, err = run_cli(capsys, "run", str(ROOT / "workflows" / "quickstart.yaml"), *TINY, "--set", "seed=3",
                           "--out", str(run), "--resume")
    assert code == 1 and "different parameters (seed)" in err

    # info on the model, the segmentation and the run folder
    code, out, _ = run_cli(capsys, "info", str(run / "model.safetensors"), "--json")
    m = json.loads(out)
    assert code == 0 and m["kind"] == "model" and m["window"] == 34 and m["stride"] == 4
    assert m["class_names"] == ["cell", "membrane"] and m["training"]["optimizer"] == "lbfgs"
    code, out, _ = run_cli(capsys, "info", str(run / "segmentation.ome.zarr"), "--json")
    s = json.loads(out)
    assert code == 0 and s["kind"] == "segmentation" and s["complete"] and s["blocks_done"] == s["blocks"]
    assert "labels/segmentation/0" in s["arrays"]
    code, out, _ = run_cli(capsys, "info", str(run))
    assert code == 0 and "evaluate" in out and "done" in out

    # resume after an interrupted evaluate step: only that step runs
    state = json.loads((run / "workflow.json").read_text())
    state["steps"]["evaluate"]["status"] = "running"
    (run / "workflow.json").write_text(json.dumps(state))
    (run / "report.json").unlink()
    code, out, err = run_cli(capsys, "run", str(ROOT / "workflows" / "quickstart.yaml"), *TINY, "--out", str(run),
                             "--resume", "--no-progress")
    assert code == 0, err
    assert err.count("done earlier, skipped") == 4 and (run / "report.json").exists()
