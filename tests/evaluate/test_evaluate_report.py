"""evaluate(): end to end on synthetic predictions, on a segment output, on real ISBI labels, and the CLI."""
import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from mpfpipe.cli import main
from mpfpipe.errors import DataError, OutputExistsError
from mpfpipe.evaluate import evaluate


def _synthetic(n=6, h=40, w=48, seed=0):
    rng = np.random.default_rng(seed)
    truth = np.zeros((n, h, w), np.uint8)
    truth[:, :, ::12] = 1  # membrane columns
    truth[:, ::10, :] = 1  # membrane rows
    prob = np.clip(np.where(truth == 1, 0.8, 0.2) + rng.normal(0, 0.15, truth.shape), 0, 1).astype(np.float32)
    return prob, truth


def test_evaluate_report_and_overlays(tmp_path):
    prob, truth = _synthetic()
    truth[0, :3, :3] = 255  # ignored pixels
    rep = evaluate(prob, truth, output=tmp_path / "ev", splits={"val": [0, 1, 2], "test": [3, 4, 5]},
                   samples=300, overlays=2)
    on_disk = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert on_disk["pixel_error"] == pytest.approx(rep["pixel_error"])
    # every figure recomputed here from the arrays (threshold 0.5 on p(class 1), 255 ignored)
    keep = truth != 255
    t, pred = truth[keep].astype(int), (prob[keep] > 0.5).astype(int)
    conf = np.array([[np.sum((t == a) & (pred == b)) for b in (0, 1)] for a in (0, 1)])
    assert rep["confusion"] == conf.tolist() and rep["n_pixels"] == prob.size - 9
    assert rep["pixel_error"] == pytest.approx(np.mean(t != pred), rel=1e-12) and rep["pixel_error"] > 0
    for k in (0, 1):
        tp, fp, fn = conf[k, k], conf[:, k].sum() - conf[k, k], conf[k, :].sum() - conf[k, k]
        assert rep["iou"][f"class{k}"] == pytest.approx(tp / (tp + fp + fn), rel=1e-12)
        assert rep["dice"][f"class{k}"] == pytest.approx(2 * tp / (2 * tp + fp + fn), rel=1e-12)
    assert rep["balanced_error"]["n_positive"] == 300 and 0 <= rep["balanced_error"]["error"] < 0.3
    r = rep["rand"]
    assert len(r["curve"]) == 11 and r["best_threshold"] in [c["threshold"] for c in r["curve"]]
    assert r["rand_error"] == pytest.approx(1 - max(c["v_rand"] for c in r["curve"]))
    assert rep["detection"]["chosen_on"] == "val" and rep["detection"]["n_images"] == 3
    assert len(rep["overlays"]) == 2 and all(Path(f).is_file() for f in rep["overlays"])
    from PIL import Image
    assert Image.open(rep["overlays"][0]).size[0] > 500
    with pytest.raises(OutputExistsError):
        evaluate(prob, truth, output=tmp_path / "ev")


def test_detection_on_defect_images():
    rng = np.random.default_rng(4)
    n = 20
    truth = np.zeros((n, 32, 32), np.uint8)
    defective = rng.random(n) < 0.4
    prob = rng.random((n, 32, 32)).astype(np.float32) * 0.55  # a few false-positive pixels everywhere
    for i in np.flatnonzero(defective):
        truth[i, 10:16, 10:20] = 1
        prob[i, 10:16, 10:20] = 0.9
    rep = evaluate(prob, truth, splits={"val": list(range(10)), "test": list(range(10, 20))}, rand=False)
    det = rep["detection"]
    assert det["error"] == 0 and det["threshold"] >= max(c for c, d in zip(det["counts"], det["defective"])
                                                        if not d)
    assert sum(map(sum, det["confusion"])) == 10
    groups = ["even" if i % 2 == 0 else "odd" for i in range(n)]
    rep = evaluate(prob, truth, splits={"val": list(range(10)), "test": list(range(10, 20))}, rand=False,
                   groups=groups)
    g = rep["detection"]["groups"]
    assert sum(v["images"] for v in g.values()) == 10 and sum(v["wrong"] for v in g.values()) == 0
    assert g["even"]["defective"] == int(defective[10::2].sum())
    assert rep["groups"]["odd"]["images"] == 10 and rep["groups"]["odd"]["positive_error"] in (0.0, None)
    with pytest.raises(DataError, match="group name"):
        evaluate(prob, truth, rand=False, groups=groups[:3])


def test_mismatched_shapes_are_clear_errors():
    prob, truth = _synthetic(n=2)
    with pytest.raises(DataError, match="slice"):
        evaluate(prob[:, :30], truth)
    with pytest.raises(DataError, match="2 slice"):
        evaluate(prob, truth[:1])


def test_evaluate_a_segment_output(tmp_path):
    from mpfpipe.arch import preset
    from mpfpipe.model import Model, save_model
    from mpfpipe.params import init_params
    from mpfpipe.segment import segment

    net = preset("steel", maps=2, hidden=4)
    save_model(Model(net, init_params(net, 0), class_names=["background", "defect"],
                     normalisation={"mean": [100.0], "std": [50.0]}), tmp_path / "m.safetensors")
    vol = np.random.default_rng(0).integers(0, 255, size=(3, 30, 36)).astype(np.uint8)
    zarr.save_array(str(tmp_path / "v.zarr"), vol)
    segment(tmp_path / "m.safetensors", tmp_path / "v.zarr", tmp_path / "s.zarr", block=(1, 30, 36), workers=0,
            progress=False, quantize=True)
    truth = (vol > 128).astype(np.uint8)
    np.save(tmp_path / "t.npy", truth)
    out = tmp_path / "ev"
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", str(tmp_path / "s.zarr"), str(tmp_path / "t.npy"), "-o", str(out), "--samples", "100",
              "--val", "0", "--test", "1-2", "--overlays", "1"])
    assert exc.value.code == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["classes"] == ["background", "defect"] and rep["model"]["sha256"]
    assert rep["detection"]["evaluated_on"] == "test" and len(rep["overlays"]) == 1


def test_isbi_labels_against_themselves(shared_data):
    import tifffile
    lab = tifffile.imread(shared_data / "isbi2012" / "train-labels.tif", key=[0, 1])
    prob = (lab == 0).astype(np.float32)  # membrane probability 1 exactly on membranes
    rep = evaluate(prob, lab, truth_positive=0, samples=1000, thresholds=(0.5,))
    assert rep["pixel_error"] == 0 and rep["rand"]["rand_error"] == pytest.approx(0, abs=1e-12)
    assert rep["balanced_error"]["error"] == 0
    assert rep["confusion"][1][1] == int((lab == 0).sum()) and rep["confusion"][0][1] == 0
    assert rep["n_pixels"] == lab.size
    # a blurred prediction is worse but sensible
    from scipy import ndimage
    blurred = np.stack([ndimage.uniform_filter(p, 9) for p in prob])
    rep2 = evaluate(blurred, lab, truth_positive=0, samples=1000)
    assert 0 < rep2["rand"]["rand_error"] < 0.9 and rep2["pixel_error"] > 0


def test_images_subset_is_the_evaluation_of_those_images(tmp_path):
    prob, truth = _synthetic(n=6)
    prob[1] = np.clip(prob[1] + 0.3, 0, 1)  # one much worse image, so a wrong subset changes every figure
    splits = {"val": [0, 1, 2], "test": [3, 4, 5]}
    sub = evaluate(prob, truth, images="1,3-4", splits=splits, samples=300, output=tmp_path / "ev", overlays=2)
    ref = evaluate(prob[[1, 3, 4]], truth[[1, 3, 4]], samples=300)
    full = evaluate(prob, truth, splits=splits, samples=300)
    assert sub["images"] == {"selection": "1,3-4", "indices": [1, 3, 4]} and sub["n_images"] == 3
    assert sub["confusion"] == ref["confusion"] != full["confusion"]
    assert sub["pixel_error"] == pytest.approx(ref["pixel_error"])
    assert sub["balanced_error"] == ref["balanced_error"]
    assert sub["rand"]["curve"] == ref["rand"]["curve"]
    # detection keeps its own splits (threshold on val, error on test), whatever the subset
    assert {k: sub["detection"][k] for k in ("threshold", "error", "confusion", "n_images")} == \
        {k: full["detection"][k] for k in ("threshold", "error", "confusion", "n_images")}
    # overlays are named by the image's index, not by its position in the subset
    assert [Path(f).name for f in sub["overlays"]] == ["overlay_z0001.png", "overlay_z0004.png"]
    # without splits, detection is chosen and judged on the subset itself
    assert evaluate(prob, truth, images=[1, 3, 4], rand=False)["detection"]["n_images"] == 3


@pytest.mark.parametrize("images, needle", [("test", "need a truth dataset"), ("2,9", "within 0..5"),
                                            ("1-x", "bad image index list")])
def test_bad_images_selection_is_a_clear_error(images, needle):
    prob, truth = _synthetic(n=6)
    with pytest.raises(DataError, match=needle):
        evaluate(prob, truth, images=images, rand=False)


def test_images_by_split_name_on_a_dataset_truth(tmp_path, capsys):
    from mpfpipe.data import ingest, open_dataset

    rng = np.random.default_rng(3)
    img = rng.integers(0, 255, size=(8, 24, 28)).astype(np.uint8)
    lab = np.zeros_like(img)
    lab[::2, 5:12, 6:15] = 1  # half the images hold a defect, so the stratified split has both kinds
    np.save(tmp_path / "i.npy", img)
    np.save(tmp_path / "l.npy", lab)
    ds = open_dataset(ingest([tmp_path / "i.npy", tmp_path / "l.npy"], tmp_path / "d.zarr", split=(0.5, 0.25, 0.25)))
    test = ds.split("test")
    prob = np.clip(lab + rng.normal(0, 0.3, lab.shape), 0, 1).astype(np.float32)
    np.save(tmp_path / "p.npy", prob)
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", str(tmp_path / "p.npy"), str(tmp_path / "d.zarr"), "--images", "test", "--no-rand",
              "--samples", "50"])
    assert exc.value.code == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["images"]["indices"] == sorted(test) and rep["n_images"] == len(test)
    assert rep["confusion"] == evaluate(prob[sorted(test)], lab[sorted(test)], rand=False)["confusion"]
    assert rep["detection"]["chosen_on"] == "val" and rep["detection"]["evaluated_on"] == "test"
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", str(tmp_path / "p.npy"), str(tmp_path / "d.zarr"), "--images", "holdout"])
    assert exc.value.code == 1 and "unknown split 'holdout'" in capsys.readouterr().err
