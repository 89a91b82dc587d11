"""Round 2 of the output rule (mpfpipe._safety), through the real CLI of every command that writes:

- rule 1: ``--overwrite`` replaces only what mpfpipe wrote: each command refuses, with ``--overwrite``, a user's
  file and one of its own inputs as its output, and leaves both byte for byte;
- rule 2: one run's outputs never collide (`check_outputs`): same file, one inside the other, refused before
  anything is written;
- rule 7: a failed run's own leftover does not block the same command with ``--overwrite``: the failure is a real
  one (the file-size limit of the process, what a full disk does to a write: EFBIG instead of ENOSPC).
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mpfpipe._safety import check_outputs, recognise
from mpfpipe.arch import preset
from mpfpipe.cli import main
from mpfpipe.errors import OutputExistsError
from mpfpipe.model import Model, save_model
from mpfpipe.params import init_params


def _cli(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return exc.value.code, err


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    from PIL import Image

    from mpfpipe.data import synth_em
    d = tmp_path_factory.mktemp("outrule")
    net = preset("steel", maps=2, hidden=4)
    save_model(Model(net, init_params(net, 0), normalisation={"mean": [128.0], "std": [50.0]}), d / "model.safetensors")
    synth_em(d / "data.zarr", n_images=3, size=(40, 40), split=(0.34, 0.33, 0.33))
    (d / "imgs").mkdir()
    Image.fromarray(np.full((40, 40), 100, np.uint8)).save(d / "imgs" / "a.png")
    np.save(d / "probs.npy", np.full((3, 40, 40), 0.5, np.float32))
    np.save(d / "truth.npy", np.zeros((3, 40, 40), np.uint8))
    (d / "net.yaml").write_text(json.dumps(preset("steel", maps=2, hidden=4).to_dict()))
    (d / "wf.yaml").write_text("name: tiny\nsteps:\n  - ingest: {source: 'synthetic:em', n_images: 2, size: 40x40}\n")
    return d


# (command, argv with {out} for the output, the input that the second case names as the output)
WRITERS = {
    "ingest": (["ingest", "synthetic:em", "{out}", "--n-images", "2", "--size", "40x40", "--no-progress"], None),
    "ingest-stack": (["ingest", "{d}/truth.npy", "{d}/truth.npy", "{out}", "--no-progress"], "{d}/truth.npy"),
    "train-model": (["train", "{d}/data.zarr", "--out", "{out}", "--net", "{d}/net.yaml"], "{d}/net.yaml"),
    "train-log": (["train", "{d}/data.zarr", "--out", "{d}/t.safetensors", "--log", "{out}", "--net", "{d}/net.yaml"],
                  "{d}/net.yaml"),
    "train-checkpoint": (["train", "{d}/data.zarr", "--out", "{d}/t.safetensors", "--checkpoint", "{out}", "--net",
                          "{d}/net.yaml"], "{d}/net.yaml"),
    "train-plot": (["train", "{d}/data.zarr", "--out", "{d}/t.safetensors", "--plot", "{out}", "--net",
                    "{d}/net.yaml"], "{d}/net.yaml"),
    "segment": (["segment", "{d}/model.safetensors", "{d}/data.zarr", "{out}", "--workers", "0", "--quiet"],
                "{d}/model.safetensors"),
    "folder-inference": (["segment", "{d}/model.safetensors", "{d}/imgs", "{out}", "--workers", "0", "--quiet"],
                         "{d}/imgs"),
    "evaluate": (["evaluate", "{d}/probs.npy", "{d}/truth.npy", "-o", "{out}", "--no-rand"], "{d}/truth.npy"),
    "export-onnx": (["export", "{d}/model.safetensors", "{out}", "--format", "onnx"], "{d}/model.safetensors"),
    "export-zip": (["export", "{d}/model.safetensors", "{out}", "--format", "bioimageio"], "{d}/model.safetensors"),
    "run": (["run", "{d}/wf.yaml", "--out", "{out}", "--no-progress"], "{d}"),  # the folder holding wf.yaml
    "bench": (["bench", "--segment", "{d}/data.zarr", "--workdir", "{out}", "--net", "steel"], "{d}/data.zarr"),
}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_overwrite_refuses_a_users_file_and_an_input(capsys, w, tmp_path, name):
    argv, an_input = WRITERS[name]
    if name != "bench":  # bench's --workdir is a folder it writes a temporary folder into: no --overwrite
        mine = tmp_path / "mine.txt"
        mine.write_text("four years of work")
        user = mine.parent if name == "run" else mine  # a run folder: the user's folder holding the file
        code, err = _cli(capsys, *[a.format(d=w, out=user) for a in argv], "--overwrite")
        assert code == 1 and err.startswith("error: ") and "did not write" in err, err
        assert mine.read_text() == "four years of work"
    if an_input is None:
        return
    target = an_input.format(d=w)
    snapshot = sorted((p.relative_to(w), p.stat().st_size) for p in w.rglob("*") if p.is_file())
    extra = [] if name == "bench" else ["--overwrite"]
    code, err = _cli(capsys, *[a.format(d=w, out=target) for a in argv], *extra)
    assert code == 1 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert "also an input" in err or "inside the input" in err or "holds the input" in err, err
    assert sorted((p.relative_to(w), p.stat().st_size) for p in w.rglob("*") if p.is_file()) == snapshot


def test_warmup_refuses_a_cache_folder_that_is_a_users_file(capsys, monkeypatch, tmp_path):
    user = tmp_path / "mine.txt"
    user.write_text("mine")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(user))
    code, err = _cli(capsys, "warmup")
    assert code == 2 and err.startswith("error: environment variable NUMBA_CACHE_DIR=") and "a file" in err
    assert user.read_text() == "mine"


# -------------------------------------------------------------------------------------------- rule 2
def test_outputs_of_one_run_never_collide(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.npz"
    with pytest.raises(OutputExistsError, match="log .* and checkpoint .* are the same file"):
        check_outputs([("log", a, ("log",)), ("checkpoint", tmp_path / "x" / ".." / "a.jsonl", ("checkpoint",))])
    with pytest.raises(OutputExistsError, match="plot .*run/p.png lies inside run folder"):
        check_outputs([("run folder", tmp_path / "run", ("run",)), ("plot", tmp_path / "run" / "p.png", ("plot",))])
    (tmp_path / "link").symlink_to(a)
    with pytest.raises(OutputExistsError, match="same file"):
        check_outputs([("log", a, ("log",)), ("checkpoint", tmp_path / "link", ("checkpoint",))])
    assert check_outputs([("log", a, ("log",)), ("checkpoint", b, ("checkpoint",))]) == {"log": False,
                                                                                        "checkpoint": False}
    assert not a.exists() and not b.exists()


@pytest.mark.parametrize("extra, needle", [
    (["--log", "{d}/c.npz", "--checkpoint", "{d}/c.npz"], "same file"),
    (["--out", "{d}/c.safetensors", "--plot", "{d}/c.safetensors"], "same file"),
    (["--checkpoint", "{d}/dir", "--log", "{d}/dir/log.jsonl"], "lies inside"),
])
def test_train_refuses_colliding_outputs_before_writing(capsys, w, tmp_path, extra, needle):
    argv = ["train", w / "data.zarr", "--net", "steel", "--maps", "2", "--hidden", "4"]
    if "--out" not in extra:
        argv += ["--out", tmp_path / "m.safetensors"]
    code, err = _cli(capsys, *argv, *[a.format(d=tmp_path) for a in extra])
    assert code == 1 and needle in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []


# -------------------------------------------------------------------------------------------- rule 7
def _limited(argv, limit: int):
    """Run the CLI in a child process whose files may not grow beyond ``limit`` bytes: writes past it fail with
    EFBIG, as on a full disk (SIGXFSZ ignored, so the write returns the error instead of killing the process)."""
    code = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
            "from mpfpipe.cli import main; main(sys.argv[1:])")
    return subprocess.run([sys.executable, "-c", code, *map(str, argv)], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("name, limit", [("segment", 1500), ("folder-inference", None), ("run", None)])
def test_a_failed_runs_leftover_does_not_block_overwrite(capsys, w, tmp_path, name, limit):
    """The limit lets the writer lock (beside the output) and the claim be written, and fails the first real
    write: the segmentation's metadata, the folder's state file, the run's workflow.json."""
    import json as _json

    from mpfpipe._lock import WriterLock
    argv, _ = WRITERS[name]
    out = tmp_path / "out"
    limit = limit or len(_json.dumps(WriterLock(out).me)) + 60
    argv = [a.format(d=w, out=out) for a in argv]
    failed = _limited(argv, limit)
    assert failed.returncode == 1, failed.stderr
    assert "Traceback" not in failed.stderr and failed.stderr.strip().splitlines()[-1].startswith("error: ")
    assert out.exists()  # something was left behind...
    assert recognise(out) is not None  # ...that mpfpipe knows as its own
    code, err = _cli(capsys, *argv, "--overwrite")
    assert code == 0, err


def test_a_users_figure_and_metrics_log_are_not_taken_for_train_outputs(capsys, w, tmp_path):
    """train rewrites its log and plot on every run, so they must be recognised strictly: a matplotlib figure of
    the user's (matplotlib's own Software tag) and a JSON-lines log of another tool with a "step" field are not
    mpfpipe's, with or without --overwrite."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = plt.figure()
    plt.plot([1, 2, 3])
    fig.savefig(tmp_path / "figure.png")
    plt.close(fig)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    for extra in (["--plot", tmp_path / "figure.png"], ["--log", tmp_path / "metrics.jsonl"]):
        code, err = _cli(capsys, "train", w / "data.zarr", "--out", tmp_path / "m.safetensors", *extra, "--overwrite")
        assert code == 1 and "did not write" in err, err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_info_names_a_failed_runs_leftover(capsys, w, tmp_path):
    from mpfpipe._lock import WriterLock
    out = tmp_path / "out"
    argv = [a.format(d=w, out=out) for a in WRITERS["run"][0]]
    assert _limited(argv, len(json.dumps(WriterLock(out).me)) + 60).returncode == 1
    code, err = _cli(capsys, "info", out)
    assert code == 1 and err.startswith(f"error: {out} is an unfinished mpfpipe run folder") and "--overwrite" in err


def test_exports_are_recognised_by_content_and_kinds_are_not_swapped(capsys, w, tmp_path):
    """An export named freely (--format) is still replaced by the same export with --overwrite, and an mpfpipe
    output of one kind is never replaced by a command writing another kind."""
    pytest.importorskip("onnx")
    out = tmp_path / "model.bin"
    for _ in range(2):
        code, err = _cli(capsys, "export", w / "model.safetensors", out, "--format", "onnx", "--overwrite")
        assert code == 0, err
    assert recognise(out) == "onnx"
    before = out.read_bytes()
    code, err = _cli(capsys, "export", w / "model.safetensors", out, "--format", "bioimageio", "--overwrite")
    assert code == 1 and "is an mpfpipe ONNX export, not an mpfpipe bioimage.io package" in err, err
    assert out.read_bytes() == before
    from mpfpipe.data import open_dataset
    n = open_dataset(w / "data.zarr").n_images
    code, err = _cli(capsys, "evaluate", w / "probs.npy", w / "truth.npy", "-o", w / "data.zarr", "--overwrite")
    assert code == 1 and "is an mpfpipe dataset, not an mpfpipe evaluation folder" in err, err
    assert open_dataset(w / "data.zarr").n_images == n
