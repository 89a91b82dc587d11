"""One declaration per option (mpfpipe.options), checked identically by the API, the workflow planner and the CLI:
NaN / inf floats, wrong types and out-of-range values are refused before any work, naming the option."""
from __future__ import annotations

import math

import numpy as np
import pytest

from mpfpipe.cli import main
from mpfpipe.errors import MpfError
from mpfpipe.options import OPTIONS, OptionError, check


@pytest.mark.parametrize("kind,name,value", [
    ("train", "lr", float("nan")), ("train", "lr", float("inf")), ("train", "lr", 0.0), ("train", "lr", "1e-3"),
    ("train", "epochs", "abc"), ("train", "epochs", 7.5), ("train", "epochs", True), ("train", "gtol", -1.0),
    ("train", "optimizer", "newton"), ("train", "max_time", "soon"),
    ("segment", "threshold", float("nan")), ("segment", "threshold", 1.5), ("segment", "workers", -3),
    ("evaluate", "threshold", float("nan")), ("evaluate", "samples", -5), ("evaluate", "overlays", -1),
    ("synthetic", "n_images", "abc"), ("synthetic", "defect_fraction", float("nan")), ("synthetic", "size", "12"),
    ("ingest", "downsample", 0), ("ingest", "split", "0.5,nan"),
])
def test_bad_values_are_refused_naming_the_option(kind, name, value):
    with pytest.raises(OptionError) as exc:
        check(kind, {name: value}, where="here: ")
    assert str(exc.value).startswith(f"here: {name}")
    with pytest.raises(MpfError):  # from the API itself (no prefix) too
        check(kind, {name: value})


def test_good_values_pass_unchanged():
    vals = {"lr": 0.5, "epochs": np.int64(3), "max_steps": None, "optimizer": "adam", "max_time": "2h"}
    assert check("train", vals) == {**vals, "epochs": 3}
    assert check("segment", {"threshold": 0.0, "workers": 0}) == {"threshold": 0.0, "workers": 0}


def test_every_declared_float_refuses_nan():
    floats = 0
    for kind, decl in OPTIONS.items():
        for name, spec in decl.items():
            if getattr(getattr(spec, "value", spec), "kind", None) is float:
                floats += 1
                with pytest.raises(OptionError):
                    check(kind, {name: math.nan})
    assert floats >= 12  # lr, gtol, timeout, threshold, ... (a declaration type change must not empty this)


def test_the_api_checks_before_any_work(tmp_path):
    from mpfpipe.data import synth_em
    from mpfpipe.evaluate import evaluate
    from mpfpipe.segment import segment
    from mpfpipe.train import train
    with pytest.raises(OptionError, match="lr = nan"):
        train(tmp_path / "missing.zarr", out=tmp_path / "m.safetensors", lr=float("nan"))
    with pytest.raises(OptionError, match="threshold = nan"):
        segment(tmp_path / "m.safetensors", tmp_path / "in.zarr", tmp_path / "out", threshold=float("nan"))
    with pytest.raises(OptionError, match="samples = -5"):
        evaluate(tmp_path / "p", tmp_path / "t", samples=-5)
    with pytest.raises(OptionError, match="n_images = 'abc'"):
        synth_em(tmp_path / "d.zarr", n_images="abc")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sets,needle", [
    (["n_images=abc"], "n_images = 'abc'"), (["iterations=abc"], "epochs = 'abc'"), (["iterations=-1"], "epochs"),
])
def test_workflow_values_fail_at_dry_run(capsys, tmp_path, sets, needle):
    from pathlib import Path
    wf = Path(__file__).resolve().parents[1] / "workflows" / "quickstart.yaml"
    argv = ["run", str(wf), "--dry-run", "--out", str(tmp_path / "run")]
    for s in sets:
        argv += ["--set", s]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and needle in err, err  # a usage error, as on the CLI
    assert not (tmp_path / "run").exists()


def test_workflow_file_value_fails_before_the_ingest_step_runs(capsys, tmp_path):
    wf = tmp_path / "wf.yaml"
    wf.write_text("name: t\nsteps:\n  - ingest: {source: 'synthetic:em', n_images: 2, size: 32x32}\n"
                  "  - train: {net: steel, epochs: abc}\n")
    with pytest.raises(SystemExit) as exc:
        main(["run", str(wf), "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "step 2 (train): epochs = 'abc'" in err
    assert not (tmp_path / "run" / "data").exists()


@pytest.mark.parametrize("argv,opt,value", [
    (["train", ".", "--out", "m.safetensors", "--lr", "nan"], "--lr", float("nan")),
    (["train", ".", "--out", "m.safetensors", "--lr", "inf"], "--lr", float("inf")),
    (["segment", __file__, "in", "out", "--threshold", "nan"], "--threshold", float("nan")),
    (["segment", __file__, "in", "out", "--workers", "-3"], "--workers", -3),
    (["evaluate", "p", "t", "--threshold", "nan"], "--threshold", float("nan")),
    (["evaluate", "p", "t", "--samples", "-5"], "--samples", -5),
])
def test_cli_uses_the_same_declaration(capsys, argv, opt, value):
    """The usage error is the declaration's own: the value and the range declared in OPTIONS (so a CLI that
    re-typed the option by hand, with click's IntRange or its own float, says something else)."""
    kind, name = argv[0], opt[2:].replace("-", "_")
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    want = f"Invalid value for '{opt}': {value!r}: expected {OPTIONS[kind][name].describe()}"
    assert exc.value.code == 2 and want in err and "Traceback" not in err, err
