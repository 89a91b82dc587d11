"""The surface-defect workflow end to end on a tiny image folder with two source groups (real LocalCluster): the
test-split evaluation reports detection and the per-group table (summary.md, report.json)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mpfpipe.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _tiles(root: Path, n_per_group: int = 8, seed: int = 0) -> Path:
    """MT_Spot/Imgs/*.tif with a bright square defect, MT_Free/Imgs/*.tif without; same-stem .png masks."""
    rng = np.random.default_rng(seed)
    for group, defect in (("MT_Spot", True), ("MT_Free", False)):
        d = root / group / "Imgs"
        d.mkdir(parents=True)
        for i in range(n_per_group):
            img = rng.normal(100, 12, (96, 120)).clip(0, 255)
            mask = np.zeros((96, 120), np.uint8)
            if defect:
                y, x = rng.integers(8, 60, 2)
                img[y:y + 24, x:x + 24] += 90
                mask[y:y + 24, x:x + 24] = 255
            Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(d / f"t{i}.tif")
            Image.fromarray(mask).save(d / f"t{i}.png")
    return root


def test_surface_defects_workflow_reports_groups(capsys, tmp_path):
    data = _tiles(tmp_path / "tiles")
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as exc:
        main(["run", str(ROOT / "workflows" / "surface-defects.yaml"), "--set", f"data={data}",
              "--set", "epochs=2", "--set", "downsample=2", "--out", str(run), "--workers", "2", "--no-progress"])
    out, err = capsys.readouterr()
    assert exc.value.code == 0, err
    report = json.loads((run / "report.json").read_text())
    test_idx = report["images"]["indices"]
    groups = report["groups"]
    # the groups of the test images and their defect pixels, from the ingested dataset itself
    from mpfpipe.data import open_dataset
    ds = open_dataset(next((run / "data").glob("*.zarr")))
    names = [ds.attrs["groups"][i].split("/")[-1] for i in test_idx]
    counts = ds.attrs["class_counts"]
    assert test_idx == sorted(ds.split("test"))
    assert {g: groups[g]["images"] for g in groups} == {g: names.count(g) for g in set(names)}
    for g in groups:
        assert groups[g]["positive_pixels"] == sum(counts[i][1] for i, n in zip(test_idx, names) if n == g)
    assert "MT_Free" in groups and groups["MT_Free"]["positive_pixels"] == 0
    assert groups["MT_Free"]["positive_error"] is None
    det = report["detection"]
    assert det["evaluated_on"] == "test"
    assert sum(g["images"] for g in det["groups"].values()) == det["n_images"]
    assert sum(g["wrong"] for g in det["groups"].values()) == round(det["error"] * det["n_images"])
    # the model records the down-sampling of its data and the detection rule chosen on val
    from mpfpipe.model import load_model
    model = load_model(run / "model.safetensors")
    assert model.downsample == 2
    assert model.detection["threshold"] == det["threshold"] and model.detection["chosen_on"] == "val"
    # so folder inference on the source images flags them by that rule, in source pixels (x 2^2), unasked
    with pytest.raises(SystemExit) as exc:
        main(["segment", str(run / "model.safetensors"), str(data), str(tmp_path / "found"), "--include", "*.tif",
              "--workers", "0", "--quiet"])
    assert exc.value.code == 0
    import csv
    rows = list(csv.DictReader(open(tmp_path / "found" / "detections.csv")))
    assert len(rows) == 16 and all((r["height"], r["width"]) == ("96", "120") for r in rows)
    assert all(r["flagged"] == str(int(int(r["defect_pixels"]) > 4 * det["threshold"])) for r in rows)
    md = (run / "summary.md").read_text()
    assert "by group" in md and "| MT_Spot |" in md and "best val pixel error" in md and "(balanced " in md


def test_group_table_has_detection_columns_only_with_a_detection_rule():
    from mpfpipe.workflow.runner import _group_table
    groups = {"A": {"images": 2, "defective_images": 1, "positive_pixels": 10, "positive_error": 0.5,
                    "negative_error": 0.25},
              "B": {"images": 3, "defective_images": 0, "positive_pixels": 0, "positive_error": None,
                    "negative_error": 0.125}}
    st = {"kind": "evaluate", "step": 4, "id": "evaluate", "result": {"groups": groups}}
    plain = _group_table(st)
    assert plain[0] == "Step 4 (evaluate) by group: pixel errors on its images."
    assert "detection" not in "".join(plain) and plain[2].count("|") == 7 and plain[3].count("|") == 7
    assert plain[4] == "| A | 2 | 1 | 10 | 50.00 % | 25.00 % |" and plain[5].startswith("| B | 3 | 0 | 0 | n/a |")
    st["result"]["detection"] = {"evaluated_on": "test", "groups": {"A": {"flagged": 1, "images": 2, "error": 0.5}}}
    det = _group_table(st)
    assert det[0].endswith("detection on test.") and det[2].count("|") == 9
    assert det[4].endswith("| 1 / 2 | 50.00 % |") and det[5].endswith("| n/a | n/a |")


def test_surface_defects_workflow_maps_labels_without_detection(capsys, tmp_path):
    """NEU-Seg's layout (images/ + masks/, class ids 0..3): --set label_map merges the defect classes into one,
    --set detection=false drops the image-level rule (every image holds a defect)."""
    rng = np.random.default_rng(1)
    root = tmp_path / "neu" / "train"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(12):
        img = rng.normal(100, 12, (64, 64))
        mask = np.zeros((64, 64), np.uint8)
        y, x = rng.integers(4, 36, 2)
        img[y:y + 20, x:x + 20] += 80
        mask[y:y + 20, x:x + 20] = 1 + i % 3
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(root / "images" / f"{i:03d}.jpg", quality=95)
        Image.fromarray(mask).save(root / "masks" / f"{i:03d}.png")
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as exc:
        main(["run", str(ROOT / "workflows" / "surface-defects.yaml"), "--set", f"data={tmp_path / 'neu'}",
              "--set", "label_map=0:0,1:1,2:1,3:1", "--set", "detection=false", "--set", "downsample=2",
              "--set", "epochs=2", "--out", str(run), "--workers", "1", "--no-progress"])
    out, err = capsys.readouterr()
    assert exc.value.code == 0, err
    report = json.loads((run / "report.json").read_text())
    assert len(report["classes"]) == 2 and report.get("detection") is None
    assert report["groups"]["train"]["defective_images"] == report["n_images"] == len(report["images"]["indices"])
    md = (run / "summary.md").read_text()
    assert "detection" not in md.split("| step |")[1].split("\n\n")[0].split("| evaluate |")[1]
