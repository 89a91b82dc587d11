"""--overwrite replaces only what mpfpipe wrote, never an input of the same command, never a user's file or folder
(mpfpipe._safety), through the real CLI: exit 1, one line, and the user's data still there, byte for byte."""
from __future__ import annotations

import numpy as np
import pytest

from mpfpipe._safety import recognise
from mpfpipe.arch import preset
from mpfpipe.cli import main
from mpfpipe.model import Model, save_model
from mpfpipe.params import init_params


def run_cli(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def refused(capsys, *argv, match):
    code, _, err = run_cli(capsys, *argv)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert match in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from mpfpipe.data import synth_em
    d = tmp_path_factory.mktemp("safety")
    net = preset("steel", maps=2, hidden=4)
    model = d / "model.safetensors"
    save_model(Model(net, init_params(net, 0), normalisation={"mean": [128.0], "std": [50.0]}), model)
    data = synth_em(d / "data.zarr", n_images=2, size=(40, 40))
    return d, model, data


@pytest.fixture
def user_dir(tmp_path):
    mydir = tmp_path / "mydir"
    mydir.mkdir()
    (mydir / "thesis.txt").write_text("four years of work")
    return mydir


def test_recognise_kinds(files, user_dir, tmp_path):
    d, model, data = files
    assert recognise(model) == "model" and recognise(data) == "dataset"
    assert recognise(user_dir) is None and recognise(user_dir / "thesis.txt") is None
    assert recognise(tmp_path / "nothing") == "missing"
    (tmp_path / "empty").mkdir()
    assert recognise(tmp_path / "empty") == "empty"


def test_segment_overwrite_refuses_a_user_folder(capsys, files, user_dir):
    _, model, data = files
    refused(capsys, "segment", "--overwrite", "--workers", "0", model, data, user_dir, match="did not write")
    assert (user_dir / "thesis.txt").read_text() == "four years of work"


def test_segment_overwrite_refuses_its_own_input(capsys, files):
    _, model, data = files
    before = sorted(p.name for p in data.rglob("*"))
    refused(capsys, "segment", "--overwrite", "--workers", "0", model, data, data, match="also an input")
    refused(capsys, "segment", "--workers", "0", model, data, data / "seg.ome.zarr", match="inside the input")
    assert sorted(p.name for p in data.rglob("*")) == before
    from mpfpipe.data import open_dataset
    assert open_dataset(data).n_images == 2


def test_segment_overwrite_refuses_an_ordinary_file(capsys, files, tmp_path):
    _, model, data = files
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    refused(capsys, "segment", "--overwrite", "--workers", "0", model, data, notes, match="did not write")
    assert notes.read_text() == "mine"


def test_ingest_overwrite_refuses_its_source_and_ordinary_files(capsys, tmp_path, user_dir):
    img = tmp_path / "img.npy"
    lab = tmp_path / "lab.npy"
    np.save(img, np.arange(2 * 8 * 8, dtype=np.uint8).reshape(2, 8, 8))
    np.save(lab, (np.arange(2 * 8 * 8).reshape(2, 8, 8) % 2).astype(np.uint8))
    raw = img.read_bytes()
    refused(capsys, "ingest", img, lab, img, "--overwrite", match="also an input")
    assert img.read_bytes() == raw
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    refused(capsys, "ingest", "synthetic:em", notes, "--overwrite", match="did not write")
    assert notes.read_text() == "mine"
    refused(capsys, "ingest", "synthetic:em", user_dir, "--overwrite", match="did not write")
    assert (user_dir / "thesis.txt").exists()
    # a folder holding an input is never replaced
    refused(capsys, "ingest", img, lab, tmp_path, "--overwrite", match="holds the input")
    assert img.read_bytes() == raw


def test_overwrite_still_replaces_mpfpipe_outputs(capsys, tmp_path):
    out = tmp_path / "d.zarr"
    for _ in range(2):
        code, _, err = run_cli(capsys, "ingest", "synthetic:em", out, "--n-images", "1", "--size", "32x32",
                               "--overwrite", "--no-progress")
        assert code == 0, err
    assert recognise(out) == "dataset"


def test_train_refuses_to_write_its_model_over_a_user_file(capsys, files, tmp_path):
    _, _, data = files
    paper = tmp_path / "paper.safetensors"
    paper.write_bytes(b"not a model")
    refused(capsys, "train", data, "--net", "steel", "--out", paper, "--overwrite", "--epochs", "0",
            match="did not write")
    assert paper.read_bytes() == b"not a model"
    log = tmp_path / "notes.jsonl"
    log.write_text("my notes\n")
    refused(capsys, "train", data, "--net", "steel", "--out", tmp_path / "m.safetensors", "--log", log,
            "--epochs", "0", match="did not write")
    assert log.read_text() == "my notes\n"


def test_evaluate_report_inside_its_prediction_is_refused(capsys, files, tmp_path):
    _, _, data = files
    refused(capsys, "evaluate", data, data, "-o", data / "eval", match="inside the input")


def test_run_overwrite_refuses_a_folder_holding_its_data(capsys, tmp_path, user_dir):
    wf = tmp_path / "wf.yaml"
    wf.write_text("name: t\nparams: {data: x}\nsteps:\n  - ingest: {source: '${data}'}\n")
    refused(capsys, "run", wf, "--out", user_dir, "--overwrite", "--set", f"data={user_dir / 'thesis.txt'}",
            match="holds the input")
    refused(capsys, "run", wf, "--out", tmp_path, "--overwrite", "--set", f"data={user_dir / 'thesis.txt'}",
            match="holds the input")
    assert (user_dir / "thesis.txt").exists() and wf.exists()
