"""Folder inference: PNG / JPEG / TIFF images of mixed sizes in sub-folders, a corrupt JPEG and a colour image
among them; masks at the source size equal to the model's down-sampling + dense pass + upsampling; the CSV counts
equal the masks'; reruns skip what is done and redo a half-written image; the detection threshold comes from the
model or the option; the CLI on a real LocalCluster."""
import csv
import json
import shutil

import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image

from mpfpipe.arch import preset
from mpfpipe.cli import main
from mpfpipe.data.ingest import downsample_image
from mpfpipe.errors import DataError, OutputExistsError
from mpfpipe.fragment import dense_forward
from mpfpipe.model import Model, load_model, save_model, set_detection
from mpfpipe.params import init_params
from mpfpipe.segment import FolderSegmentError, segment, segment_folder
from mpfpipe.segment.blocks import normalise
from mpfpipe.segment.imagefiles import mask_names, upsample_labels

NORM = {"mean": [120.0], "std": [40.0]}
GOOD = {"a/x.png": "a/x.png.png", "a/x.tif": "a/x.tif.png", "a/grey_rgb.png": "a/grey_rgb.png",
        "b/x.jpg": "b/x.png", "b/c/big.tiff": "b/c/big.png"}
BAD = ("a/colour.png", "b/broken.jpg")


@pytest.fixture(scope="module")
def model2(tmp_path_factory):
    """A steel net whose training data was down-sampled by 2 (random weights: the masks are not trivial)."""
    net = preset("steel", maps=3, hidden=6)
    path = tmp_path_factory.mktemp("model") / "steel2.safetensors"
    save_model(Model(net, init_params(net, 3), normalisation=NORM, downsample=2,
                     provenance={"input_dtype": "uint8"}), path)
    return path


def make_folder(root):
    rng = np.random.default_rng(0)
    for d in ("a", "b/c"):
        (root / d).mkdir(parents=True)
    Image.fromarray(rng.integers(0, 255, (37, 53), dtype=np.uint8)).save(root / "a/x.png")
    tifffile.imwrite(root / "a/x.tif", rng.integers(0, 255, (24, 30), dtype=np.uint8))  # same stem as x.png
    g = rng.integers(0, 255, (29, 44), dtype=np.uint8)
    Image.fromarray(np.stack([g, g, g], -1)).save(root / "a/grey_rgb.png")
    Image.fromarray(rng.integers(0, 255, (29, 44, 3), dtype=np.uint8)).save(root / "a/colour.png")
    Image.fromarray(rng.integers(0, 255, (40, 31), dtype=np.uint8)).save(root / "b/x.jpg", quality=90)
    tifffile.imwrite(root / "b/c/big.tiff", rng.integers(0, 255, (71, 64), dtype=np.uint8))
    data = (root / "b/x.jpg").read_bytes()
    (root / "b/broken.jpg").write_bytes(data[: len(data) // 2])  # a truncated JPEG
    (root / "b/notes.txt").write_text("not an image")
    return root


def expected(model_path, src):
    """Class ids at the source size: down-sample by the model's factor, dense pass, repeat back."""
    m = load_model(model_path)
    img = tifffile.imread(src) if src.suffix.startswith(".tif") else np.asarray(Image.open(src))
    img = img[..., 0] if img.ndim == 3 else img
    small = downsample_image(img[None], m.downsample)
    p = dense_forward(m.net, m.params, normalise(small, NORM))
    sure = upsample_labels((np.abs(p[1] - p[0]) > 1e-5).astype(np.uint8), m.downsample, img.shape).astype(bool)
    return upsample_labels(p.argmax(0).astype(np.uint8), m.downsample, img.shape), sure


def read_csv(path):
    with open(path) as fh:
        return {r["image"]: r for r in csv.DictReader(fh)}


def test_masks_csv_errors_and_rerun(model2, tmp_path):
    src = make_folder(tmp_path / "in")
    out = tmp_path / "out"
    with pytest.raises(FolderSegmentError) as exc:
        segment(model2, src, out, block=(1, 9, 14), workers=0, progress=False)
    res = exc.value.result
    assert (res.images, res.done, res.failed, res.downsample) == (7, 5, 2, 2)
    assert any("colour.png" in e and "unequal channels" in e for e in res.errors)
    assert any("broken.jpg" in e for e in res.errors) and "2 of 7 images failed" in str(exc.value)
    rows = read_csv(out / "detections.csv")
    assert list(rows) == sorted(GOOD.keys() | set(BAD))
    for rel, mask_rel in GOOD.items():
        mask = np.asarray(Image.open(out / "masks" / mask_rel))
        want, sure = expected(model2, src / rel)
        assert mask.shape == want.shape == (int(rows[rel]["height"]), int(rows[rel]["width"]))
        assert sure.mean() > 0.99 and np.array_equal(mask[sure], want[sure])
        assert int(rows[rel]["defect_pixels"]) == int((mask == 1).sum())
        assert rows[rel]["flagged"] == str(int((mask == 1).sum() > 0)) and rows[rel]["error"] == ""
    for rel in BAD:
        assert rows[rel]["defect_pixels"] == "" and rel.split("/")[-1] in rows[rel]["error"]
    assert not (out / "masks" / "a" / "colour.png").exists()


def test_rerun_skips_and_redoes_interrupted_image(model2, tmp_path):
    src = make_folder(tmp_path / "in")
    for rel in BAD:
        (src / rel).unlink()
    out = tmp_path / "out"
    first = segment_folder(model2, src, out, workers=0, progress=False)
    assert (first.done, first.skipped, first.failed) == (5, 0, 0)
    state = json.loads((out / "mpfpipe.json").read_text())
    assert state["complete"] is True and state["settings"]["downsample"] == 2
    before = (out / "masks/b/x.png").read_bytes()
    again = segment_folder(model2, src, out, workers=0, progress=False)
    assert (again.done, again.skipped) == (0, 5)
    # interrupted after the mask, before the marker: the image is computed again and the mask is whole
    (out / "masks/b/x.png").write_bytes(before[:30])
    (out / ".done/b/x.png.json").unlink()
    # a changed source image is computed again too
    Image.fromarray(np.zeros((20, 22), np.uint8)).save(src / "a/x.png")
    third = segment_folder(model2, src, out, workers=0, progress=False)
    assert (third.done, third.skipped) == (2, 3)
    assert (out / "masks/b/x.png").read_bytes() == before
    assert np.asarray(Image.open(out / "masks/a/x.png.png")).shape == (20, 22)
    # a source replaced by a damaged file: its earlier mask goes, the CSV says why
    data = (src / "b/x.jpg").read_bytes()
    (src / "b/x.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(FolderSegmentError, match="1 of 5 images failed"):
        segment_folder(model2, src, out, workers=0, progress=False)
    assert not (out / "masks/b/x.png").exists() and not (out / ".done/b/x.png.json").exists()
    assert "b/x.jpg" in read_csv(out / "detections.csv")["b/x.jpg"]["error"]
    # other settings: refused unless --overwrite, which replaces only what mpfpipe wrote
    with pytest.raises(OutputExistsError, match="tta"):
        segment_folder(model2, src, out, workers=0, progress=False, tta=True)
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError):
        segment_folder(model2, src, tmp_path / "user", workers=0, progress=False, overwrite=True)
    with pytest.raises(OutputExistsError, match="inside the input"):
        segment_folder(model2, src, src / "results", workers=0, progress=False)


def test_detection_threshold_from_model_and_overridden(model2, tmp_path):
    src = make_folder(tmp_path / "in")
    for rel in BAD:
        (src / rel).unlink()
    model = tmp_path / "m.safetensors"
    shutil.copy(model2, model)
    out = tmp_path / "out"
    counts = {r: int(v["defect_pixels"]) for r, v in
              read_csv(segment_folder(model, src, out, workers=0, progress=False).csv).items()}
    t_model = sorted(counts.values())[2] / 4 - 0.5  # between counts, in pixels at the model's resolution (/2)
    set_detection(model, {"threshold": t_model, "positive": 1, "chosen_on": "val"})
    assert load_model(model).detection["threshold"] == t_model and load_model(model).downsample == 2
    shutil.rmtree(out)
    res = segment_folder(model, src, out, workers=0, progress=False)
    assert res.threshold == 4 * t_model and "the model's rule" in res.threshold_from
    rows = read_csv(out / "detections.csv")
    assert {r: v["flagged"] == "1" for r, v in rows.items()} == {r: c > 4 * t_model for r, c in counts.items()}
    assert res.flagged == sum(c > 4 * t_model for c in counts.values()) and 0 < res.flagged < 5
    # the option wins, and changing it needs no recomputation
    res = segment_folder(model, src, out, workers=0, progress=False, detect_threshold=0)
    assert res.skipped == 5 and res.done == 0 and res.threshold_from == "--detect-threshold"
    assert all(v["flagged"] == str(int(counts[r] > 0)) for r, v in read_csv(out / "detections.csv").items())


def test_cli_on_a_local_cluster_matches_in_process(model2, tmp_path, capsys):
    src = make_folder(tmp_path / "in")
    with pytest.raises(SystemExit) as exc:
        main(["segment", str(model2), str(src), str(tmp_path / "out"), "--workers", "2", "--threads", "1",
              "--quiet", "--block", "16,16"])
    cap = capsys.readouterr()
    assert exc.value.code == 1
    assert "failed: " in cap.err and "colour.png" in cap.err and "broken.jpg" in cap.err
    assert "2 of 7 images failed" in cap.err and "s per image" in cap.out and "5 done" in cap.out
    for rel, mask_rel in GOOD.items():
        want, sure = expected(model2, src / rel)
        mask = np.asarray(Image.open(tmp_path / "out" / "masks" / mask_rel))
        assert np.array_equal(mask[sure], want[sure])
    # --include: only the JPEGs (the magnetic tiles keep PNG masks beside their JPEG images)
    with pytest.raises(SystemExit) as exc:
        main(["segment", str(model2), str(src), str(tmp_path / "jpg"), "--workers", "0", "--quiet",
              "--include", "*.jpg", "--exclude", "*broken*", "--detect-threshold", "5"])
    assert exc.value.code == 0
    assert list(read_csv(tmp_path / "jpg" / "detections.csv")) == ["b/x.jpg"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["info", str(tmp_path / "out")])
    info = capsys.readouterr().out
    assert exc.value.code == 0 and "folder segmentation" in info and "complete      False (7 images, 2 failed" in info
    assert "broken.jpg" in info


def test_mask_names_keep_folders_and_split_equal_stems():
    assert mask_names(["a/x.png", "b/x.jpg", "a/x.tif", "y.jpeg"]) == {
        "a/x.png": "a/x.png.png", "a/x.tif": "a/x.tif.png", "b/x.jpg": "b/x.png", "y.jpeg": "y.png"}


def test_downsampled_model_refuses_volumes_it_would_get_wrong(model2, tmp_path):
    zarr.save_array(str(tmp_path / "v.zarr"), np.zeros((1, 20, 20), np.uint8))
    with pytest.raises(DataError, match="down-sampled by 2"):
        segment(model2, tmp_path / "v.zarr", tmp_path / "s.zarr", workers=0, progress=False)
    with pytest.raises(DataError, match="folder inputs only"):
        segment(model2, tmp_path / "v.zarr", tmp_path / "s.zarr", workers=0, progress=False, detect_threshold=3)


def test_real_magnetic_tile_and_neu_seg_images(shared_data, tmp_path):
    """The real folders as they are: magnetic tiles of their own sizes (JPEG images beside PNG masks, so
    --include), NEU-Seg's grey JPEGs stored as RGB with equal channels; masks of each source's size."""
    net = preset("steel", maps=3, hidden=6)
    model = tmp_path / "m4.safetensors"
    save_model(Model(net, init_params(net, 1), normalisation=NORM, downsample=4,
                     provenance={"input_dtype": "uint8"}), model)
    tiles = segment_folder(model, shared_data / "magnetic_tile", tmp_path / "tiles", workers=0, progress=False,
                           include=("MT_Crack/*.jpg",))
    neu = segment_folder(model, shared_data / "neu_seg" / "val" / "images", tmp_path / "neu", workers=0,
                         progress=False, include=("00003*.jpg",), tta=True)
    assert tiles.done == 14 and neu.done >= 1 and tiles.failed == neu.failed == 0
    for root, out in ((shared_data / "magnetic_tile", tmp_path / "tiles"),
                      (shared_data / "neu_seg" / "val" / "images", tmp_path / "neu")):
        for rel, row in read_csv(out / "detections.csv").items():
            w, h = Image.open(root / rel).size
            mask = np.asarray(Image.open((out / "masks" / rel).with_suffix(".png")))
            assert mask.shape == (h, w) and int(row["defect_pixels"]) == int((mask == 1).sum())
