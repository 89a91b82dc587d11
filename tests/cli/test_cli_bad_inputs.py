"""Every command through a set of bad inputs: each must end with exactly one clean ``error: ...`` line on stderr (no
traceback, no bare "SomeError: ..." standing for the explanation, no "unexpected internal error": these are the
user's mistakes, not bugs), exit 2 for usage errors in every spelling (command line, --config, workflow,
environment) and 1 for the rest, and leave the user's files as they were."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from mpfpipe.arch import preset
from mpfpipe.cli import main
from mpfpipe.model import Model, save_model
from mpfpipe.params import init_params
from mpfpipe.train.checkpoint import save_checkpoint

BARE = re.compile(r"^error: [A-Za-z_.]*(Error|Exception|Warning)\b")


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    """A model, a dataset, a checkpoint and an assortment of bad files."""
    import tifffile
    from PIL import Image

    from mpfpipe.data import synth_em
    d = tmp_path_factory.mktemp("bad")
    net = preset("steel", maps=2, hidden=4)
    save_model(Model(net, init_params(net, 0), normalisation={"mean": [128.0], "std": [50.0]},
                     provenance={"input_dtype": "uint8"}), d / "model.safetensors")
    synth_em(d / "data.zarr", n_images=3, size=(40, 40), split=(0.34, 0.33, 0.33))
    save_checkpoint(d / "run.ckpt.npz", {"x": np.zeros(3)}, {"config": {}})
    (d / "notes.txt").write_text("mine")
    import zarr
    zarr.open_array(str(d / "empty_vol.zarr"), mode="w", shape=(0, 40, 40), dtype="uint8", chunks=(1, 40, 40))
    (d / "fake.tif").write_text("not a tiff")
    (d / "fake.safetensors").write_bytes(b"\x00" * 50)
    (d / "empty").mkdir()
    np.save(d / "empty_images.npy", np.zeros((0, 8, 8), np.uint8))
    np.save(d / "empty_labels.npy", np.zeros((0, 8, 8), np.uint8))
    np.save(d / "ignore.npy", np.full((3, 40, 40), 255, np.uint8))
    np.save(d / "zeros.npy", np.zeros((3, 40, 40), np.uint8))
    np.save(d / "probs.npy", np.full((3, 40, 40), 0.5, np.float32))
    np.save(d / "empty_probs.npy", np.zeros((0, 40, 40), np.float32))
    np.save(d / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(d / "complex.npy", np.zeros((3, 40, 40), np.complex64))
    (d / "cut.npy").write_bytes((d / "zeros.npy").read_bytes()[:200])
    tifffile.imwrite(d / "whole.tif", np.zeros((2, 30, 40), np.uint8), photometric="minisblack")
    (d / "cut.tif").write_bytes((d / "whole.tif").read_bytes()[:300])
    np.save(d / "nan_probs.npy", np.where(np.eye(40, dtype=bool), np.nan, 0.5).astype(np.float32)[None].repeat(3, 0))
    tifffile.imwrite(d / "small.tif", np.zeros((3, 30, 40), np.uint8), photometric="minisblack")
    tifffile.imwrite(d / "sixteen.tif", np.arange(40 * 40, dtype=np.uint16).reshape(40, 40))
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(d / "grey.png")
    (d / "bad.yaml").write_text("epochs: abc\n")
    (d / "unknown.yaml").write_text("frobnicate: 1\n")
    (d / "wf_bad_value.yaml").write_text("name: x\nsteps:\n  - ingest: {source: 'synthetic:em', n_images: -3}\n")
    (d / "sched.json").write_text("{not json")
    (d / "binary.yaml").write_bytes(b"\xff\xfe\x00binary")
    return d


def _run(capsys, monkeypatch, argv, env=None):
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    for k in env or {}:
        monkeypatch.delenv(k)
    return exc.value.code, err


# (argv, expected exit code, a piece of the message); {d} is the work folder
CASES = [
    # ingest
    (["ingest", "{d}/empty", "{d}/o1.zarr", "--no-progress"], 1, "no image/mask pairs"),
    (["ingest", "{d}/empty_images.npy", "{d}/empty_labels.npy", "{d}/o2.zarr", "--no-progress"], 1, "empty"),
    (["ingest", "{d}/fake.tif", "{d}/zeros.npy", "{d}/o3.zarr", "--no-progress"], 1, "fake.tif"),
    (["ingest", "{d}/zeros.npy", "{d}/zeros.npy", "{d}/o3.zarr", "--no-progress"], 1, "given twice"),
    (["ingest", "{d}/zeros.npy", "{d}/ignore.npy", "{d}/zeros.npy", "--overwrite", "--no-progress"], 1,
     "is also an input"),
    (["ingest", "synthetic:em", "{d}/notes.txt", "--overwrite", "--no-progress"], 1, "did not write"),
    (["ingest", "synthetic:em", "{d}/o4.zarr", "--split", "abc", "--no-progress"], 2, "split"),
    # train
    (["train", "{d}/empty", "--out", "{d}/m.safetensors"], 1, "empty"),
    (["train", "{d}/data.zarr", "--out", "{d}/m.safetensors", "--log", "{d}/m.safetensors"], 1, "same file"),
    (["train", "{d}/data.zarr", "--out", "{d}/m.safetensors", "--plot", "{d}/data.zarr/p.png"], 1, "inside the input"),
    (["train", "{d}/data.zarr", "--out", "{d}/m.safetensors", "--log", "{d}/notes.txt"], 1, "did not write"),
    (["train", "{d}/data.zarr", "--out", "{d}/m.safetensors", "--net", "{d}/nothere.yaml"], 1, "nothere"),
    (["train", "{d}/data.zarr", "--out", "{d}/m.safetensors", "--net", "{d}/binary.yaml"], 1, "cannot parse"),
    (["train", "{d}/data.zarr", "--out", "{d}/m.safetensors", "--val-split", "nope"], 1, "nope"),
    (["train", "{d}/data.zarr", "--out", "{d}/m.safetensors", "--scheduler-file", "{d}/sched.json"], 1,
     "not JSON"),
    (["train", "{d}/data.zarr", "--out", "{d}/m.safetensors", "--config", "{d}/bad.yaml"], 2, "epochs"),
    (["train", "{d}/data.zarr", "--out", "{d}/m.safetensors", "--config", "{d}/unknown.yaml"], 2, "frobnicate"),
    # segment
    (["segment", "{d}/fake.safetensors", "{d}/data.zarr", "{d}/s1.zarr", "--quiet"], 1, "fake.safetensors"),
    (["segment", "{d}/model.safetensors", "{d}/empty", "{d}/s2", "--quiet", "--workers", "0"], 1, "no JPEG"),
    (["segment", "{d}/model.safetensors", "{d}/fake.tif", "{d}/s3.zarr", "--quiet", "--workers", "0"], 1,
     "fake.tif"),
    (["segment", "{d}/model.safetensors", "{d}/nope.h5:raw", "{d}/s4.zarr", "--quiet"], 1, "nope.h5"),
    (["segment", "{d}/model.safetensors", "{d}/empty_vol.zarr", "{d}/s6.zarr", "--quiet", "--workers", "0"], 1,
     "is empty (shape (0, 40, 40))"),
    (["bench", "--segment", "{d}/empty_vol.zarr", "--net", "steel"], 1, "is empty"),
    (["segment", "{d}/model.safetensors", "{d}/data.zarr", "{d}/notes.txt", "--quiet", "--overwrite"], 1,
     "did not write"),
    (["segment", "{d}/model.safetensors", "{d}/data.zarr", "{d}/s5.zarr", "--block", "0,0"], 2, "block"),
    (["segment", "{d}/model.safetensors", "{d}/data.zarr", "{d}/s5.zarr", "--scheduler", "{d}/sched.json",
      "--quiet"], 1, "not JSON"),
    # evaluate
    (["evaluate", "{d}/notes.txt", "{d}/data.zarr"], 1, "notes.txt"),
    (["evaluate", "{d}/probs.npy", "{d}/ignore.npy"], 1, "ignore label"),
    (["evaluate", "{d}/probs.npy", "{d}/zeros.npy", "--truth-positive", "7"], 1, "no pixel"),
    (["evaluate", "{d}/probs.npy", "{d}/zeros.npy", "--image", "{d}/small.tif"], 1, "slice 0"),
    (["evaluate", "{d}/empty_probs.npy", "{d}/zeros.npy"], 1, "slice"),
    (["evaluate", "{d}/empty_probs.npy", "{d}/empty_probs.npy"], 1, "holds no pixel"),
    (["evaluate", "{d}/nan_probs.npy", "{d}/zeros.npy"], 1, "NaN"),
    (["evaluate", "{d}/objects.npy", "{d}/zeros.npy"], 1, "cannot read .npy"),
    (["evaluate", "{d}/probs.npy", "{d}/cut.npy"], 1, "cannot read .npy"),
    (["evaluate", "{d}/complex.npy", "{d}/zeros.npy"], 1, "complex64"),
    (["export", "{d}/model.safetensors", "{d}/y.zip", "--sample", "{d}/cut.tif"], 1, "cut.tif"),
    (["evaluate", "{d}/probs.npy", "{d}/probs.npy"], 1, "whole numbers"),
    (["evaluate", "{d}/probs.npy", "{d}/empty"], 1, "evaluate reads"),
    (["evaluate", "{d}/probs.npy", "{d}/zeros.npy", "-o", "{d}/empty/../zeros.npy", "--overwrite"], 1,
     "also an input"),
    (["evaluate", "{d}/probs.npy", "{d}/data.zarr", "-o", "{d}/data.zarr/ev"], 1, "inside the input"),
    (["evaluate", "{d}/probs.npy", "{d}/zeros.npy", "--threshold", "nan"], 2, "threshold"),
    (["evaluate", "{d}/probs.npy", "{d}/zeros.npy", "--image", "{d}/small.tif", "-o", "{d}/ev_new"], 1, "slice 0"),
    # export
    (["export", "{d}/model.safetensors", "{d}/notes.txt", "--format", "onnx", "--overwrite"], 1, "did not write"),
    (["export", "{d}/model.safetensors", "{d}/model.safetensors", "--format", "onnx", "--overwrite"], 1,
     "also an input"),
    (["export", "{d}/model.safetensors", "{d}/x.zip", "--sample", "{d}/notes.txt"], 1, "notes.txt"),
    (["export", "{d}/model.safetensors", "{d}/x.zip", "--sample", "{d}/sixteen.tif"], 1, "uint16"),
    (["export", "{d}/model.safetensors", "{d}/grey.png", "--format", "bioimageio", "--sample", "{d}/grey.png",
      "--overwrite"], 1, "also an input"),
    # info
    (["info", "{d}/run.ckpt.npz"], 1, "checkpoint"),
    (["info", "{d}/notes.txt"], 1, "not an mpfpipe model file"),
    (["info", "{d}/grey.png"], 1, "image file"),
    (["info", "{d}/empty"], 1, "not an mpfpipe"),
    # run
    (["run", "{d}/wf_bad_value.yaml", "--dry-run"], 2, "n_images"),
    (["run", "{d}/nothere.yaml", "--dry-run"], 2, "not found"),
    (["run", "{d}/binary.yaml", "--dry-run"], 2, "not a text (YAML) file"),
    (["train", "{d}/data.zarr", "--out", "{d}/m.safetensors", "--config", "{d}/binary.yaml"], 2, "not a text"),
    (["train", "{d}/data.zarr", "--out", "{d}/m.safetensors", "--max-time", "abc"], 2, "max_time"),
    (["evaluate", "{d}/probs.npy", "{d}/zeros.npy", "--val", "0-abc"], 2, "index list"),
    (["evaluate", "{d}/probs.npy", "{d}/zeros.npy", "--images", "7"], 2, "within 0..2"),
    (["export", "{d}/model.safetensors", "{d}/x.zip", "--name", "abc"], 2, "5 to 128"),
    # bench
    (["bench", "--size", "0x0"], 2, "size"),
    (["bench", "--net", "bogus"], 1, "bogus"),
    (["bench", "--segment", "{d}/data.zarr", "--workdir", "{d}/data.zarr", "--net", "steel"], 1, "inside the input"),
]
ENV_CASES = [
    (["info", "{d}/model.safetensors"], {"MPFPIPE_THREADS": "abc"}, "MPFPIPE_THREADS"),
    (["warmup"], {"NUMBA_NUM_THREADS": "-1"}, "NUMBA_NUM_THREADS"),
    (["segment", "{d}/model.safetensors", "{d}/data.zarr", "{d}/e.zarr"], {"OMP_NUM_THREADS": "two"},
     "OMP_NUM_THREADS"),
    (["warmup"], {"NUMBA_CACHE_DIR": "{d}/notes.txt"}, "NUMBA_CACHE_DIR"),
]


def _check_line(err: str, code: int, want_code: int, needle: str, argv) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip() and "it/s]" not in ln and "block/s]" not in ln]
    assert lines, (argv, err)
    assert "Traceback" not in err, (argv, err)
    assert len(lines) == 1, (argv, err)
    line = lines[0]
    assert line.startswith("error: "), (argv, line)
    assert not BARE.match(line), (argv, line)
    assert "unexpected internal error" not in line, (argv, line)
    assert needle in line, (argv, line)
    assert code == want_code, (argv, code, line)
    return line


@pytest.mark.parametrize("argv, code, needle", CASES, ids=[" ".join(c[0][:2]) + f"-{i}" for i, c in
                                                           enumerate(CASES)])
def test_bad_input_gives_one_clean_line(capsys, monkeypatch, w, argv, code, needle):
    before = {p: p.read_bytes() for p in w.iterdir() if p.is_file()}
    argv = [a.format(d=w) for a in argv]
    got, err = _run(capsys, monkeypatch, argv)
    _check_line(err, got, code, needle, argv)
    assert {p: p.read_bytes() for p in w.iterdir() if p.is_file() and p in before} == before  # nothing touched
    assert not (w / "ev_new").exists() and not any((w / "empty").iterdir())  # refused before writing


@pytest.mark.parametrize("argv, env, needle", ENV_CASES, ids=[f"{a[0]}-{next(iter(e))}" for a, e, _ in ENV_CASES])
def test_bad_environment_is_a_usage_error(capsys, monkeypatch, w, argv, env, needle):
    argv = [a.format(d=w) for a in argv]
    got, err = _run(capsys, monkeypatch, argv, {k: v.format(d=w) for k, v in env.items()})
    _check_line(err, got, 2, needle, argv)


def test_an_unexpected_error_names_the_command_and_its_files(capsys, monkeypatch, w):
    """A bug (here: an exception raised inside the evaluation) still gives one line that says what was being done
    and with which files, and the Python exception is explained, not standing alone."""
    import mpfpipe.evaluate as ev

    def boom(*a, **k):
        raise IndexError("list index out of range")
    monkeypatch.setattr(ev.metrics, "pixel_error", boom)
    got, err = _run(capsys, monkeypatch, ["evaluate", w / "probs.npy", w / "zeros.npy"])
    line = [ln for ln in err.splitlines() if ln.strip()]
    assert got == 1 and len(line) == 1, err
    assert not BARE.match(line[0]) and "Traceback" not in err
    assert line[0].startswith("error: mpfpipe evaluate on ") and "probs.npy" in line[0] and "zeros.npy" in line[0]
    assert "IndexError (list index out of range)" in line[0] and "--debug" in line[0]


def test_workflow_option_value_is_a_usage_error_like_the_command_line(capsys, monkeypatch, w, tmp_path):
    """The same bad value exits 2 on the command line, in --config and in a workflow."""
    (tmp_path / "c.yaml").write_text(json.dumps({"n_images": -3}))
    spellings = [["ingest", "synthetic:em", tmp_path / "a.zarr", "--n-images", "-3"],
                 ["ingest", "synthetic:em", tmp_path / "b.zarr", "--config", tmp_path / "c.yaml"],
                 ["run", w / "wf_bad_value.yaml", "--out", tmp_path / "run", "--dry-run"]]
    for argv in spellings:
        got, err = _run(capsys, monkeypatch, argv)
        assert got == 2, (argv, err)
        assert "Traceback" not in err
