"""evaluate reads what segment and ingest read: HDF5 datasets (FILE.h5:DATASET) and image files (a palette PNG
truth is its indices, the one reader's mask rule), and refuses a folder-inference output in one line saying what
it takes."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
from PIL import Image

from mpfpipe.cli import main
from mpfpipe.errors import DataError
from mpfpipe.evaluate import evaluate

RNG = np.random.default_rng(3)
PROB = RNG.random((2, 24, 30)).astype(np.float32)
TRUTH = (RNG.random((2, 24, 30)) > 0.6).astype(np.uint8)


def test_hdf5_prediction_and_truth_equal_the_arrays(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["pred/p"] = PROB
        f["gt"] = TRUTH
    a = evaluate(f"{tmp_path / 'a.h5'}:pred/p", f"{tmp_path / 'a.h5'}:gt", rand=False, samples=50)
    b = evaluate(PROB, TRUTH, rand=False, samples=50)
    assert a["confusion"] == b["confusion"] and a["pixel_error"] == b["pixel_error"]
    tp = int(((PROB > 0.5) & (TRUTH == 1)).sum())
    assert a["confusion"][1][1] == tp and sum(map(sum, a["confusion"])) == TRUTH.size


def test_palette_png_truth_is_its_indices(tmp_path):
    truth = TRUTH[0]
    im = Image.fromarray(truth, mode="P")
    im.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)  # shown black / white: as a picture 0 / 255
    im.save(tmp_path / "t.png")
    rep = evaluate(PROB[:1], str(tmp_path / "t.png"), rand=False, samples=50)
    pred = (PROB[0] > 0.5).astype(np.uint8)
    assert rep["confusion"] == [[int(((truth == t) & (pred == p)).sum()) for p in (0, 1)] for t in (0, 1)]


def test_folder_inference_output_is_refused_saying_what_evaluate_takes(tmp_path, capsys):
    from mpfpipe.arch import preset
    from mpfpipe.model import Model, save_model
    from mpfpipe.params import init_params
    from mpfpipe.segment import segment_folder

    net = preset("steel", maps=2, hidden=4)
    save_model(Model(net, init_params(net, 0), normalisation={"mean": [128.0], "std": [50.0]}), tmp_path / "m.st")
    (tmp_path / "imgs").mkdir()
    Image.fromarray((TRUTH[0] * 200).astype(np.uint8)).save(tmp_path / "imgs" / "a.png")
    segment_folder(tmp_path / "m.st", tmp_path / "imgs", tmp_path / "fi", workers=0, progress=False)
    with pytest.raises(DataError, match="folder-inference output .* evaluate takes"):
        evaluate(str(tmp_path / "fi"), TRUTH[:1])
    np.save(tmp_path / "t.npy", TRUTH[:1])
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", str(tmp_path / "fi"), str(tmp_path / "t.npy")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 1 and len(err) == 1 and "HDF5 dataset FILE.h5:DATASET" in err[0]


def test_a_0_255_mask_truth_is_read_as_ingest_reads_it(tmp_path):
    """A binary mask saved as 0 / 255 is two classes, not class 0 plus an all-ignore foreground (which silently
    left every positive pixel out of every metric)."""
    from mpfpipe.data import ingest, open_dataset
    mask = (TRUTH * 255).astype(np.uint8)
    rep = evaluate(PROB, mask, rand=False, samples=50)
    assert rep["confusion"] == evaluate(PROB, TRUTH, rand=False, samples=50)["confusion"]
    assert rep["n_pixels"] == TRUTH.size
    np.save(tmp_path / "img.npy", (PROB * 255).astype(np.uint8))
    np.save(tmp_path / "lab.npy", mask)
    ds = open_dataset(ingest([tmp_path / "img.npy", tmp_path / "lab.npy"], tmp_path / "d.zarr", progress=False))
    np.testing.assert_array_equal(np.stack([ds.raw_labels(i) for i in range(2)]), TRUTH)  # ingest: the same ids


def test_a_class_id_mask_given_as_prediction_is_refused(tmp_path):
    with pytest.raises(DataError, match="holds only the values 0 and 1: class ids, not probabilities"):
        evaluate(TRUTH.copy(), TRUTH, rand=False)


def test_a_damaged_segmentation_is_refused_not_read_as_zeros(tmp_path):
    from mpfpipe.arch import preset
    from mpfpipe.data import synth_em
    from mpfpipe.model import Model, save_model
    from mpfpipe.params import init_params
    from mpfpipe.segment import segment

    net = preset("steel", maps=2, hidden=4)
    save_model(Model(net, init_params(net, 0), normalisation={"mean": [128.0], "std": [50.0]}), tmp_path / "m.st")
    data = synth_em(tmp_path / "d.zarr", n_images=2, size=(40, 40))
    segment(tmp_path / "m.st", data, tmp_path / "s.zarr", workers=0, progress=False, levels=1)
    assert evaluate(str(tmp_path / "s.zarr"), str(data), rand=False, samples=50)["n_pixels"] == 2 * 40 * 40
    chunk = next(p for p in sorted((tmp_path / "s.zarr" / "0").rglob("*")) if p.is_file() and p.name != "zarr.json")
    chunk.unlink()
    with pytest.raises(DataError, match="1 damaged block"):
        evaluate(str(tmp_path / "s.zarr"), str(data), rand=False, samples=50)


def test_image_for_overlays_is_read_by_the_one_reader(tmp_path):
    """--image as a PNG file: read as ingest reads pictures; one of another shape than the truth is refused."""
    from mpfpipe.evaluate.inputs import load_image
    im = Image.fromarray((TRUTH[0] * 5).astype(np.uint8), mode="P")
    im.putpalette(list(np.repeat(255 - np.arange(256, dtype=np.uint8), 3)))
    im.save(tmp_path / "pic.png")
    np.testing.assert_array_equal(load_image(str(tmp_path / "pic.png")), 255 - TRUTH[0] * 5)  # the picture
    rep = evaluate(PROB[:1], TRUTH[:1], image=str(tmp_path / "pic.png"), output=tmp_path / "ev", rand=False,
                   samples=50, overlays=1)
    assert rep["overlays"] == [str(tmp_path / "ev" / "overlay_z0000.png")]
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(DataError, match=r"image .*small.png: slice 0 is \(5, 5\), but the truth"):
        evaluate(PROB[:1], TRUTH[:1], image=str(tmp_path / "small.png"), rand=False)
