"""The CLI contract: exit 0 on success, 1 on a runtime error with one clear line (traceback only with --debug),
2 on usage errors; --help shows defaults; --config supplies option values. Runs `mpfpipe.cli.main` in-process
(the same code path as the console script) and a single real subprocess for the installed entry point."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mpfpipe.cli import main

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "workflows" / "quickstart.yaml"


def run_cli(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def bad_workflow(tmp_path):
    count = iter(range(1000))

    def make(text):
        p = tmp_path / f"wf{next(count)}.yaml"
        p.write_text(text)
        return str(p)
    return make


# ---------------------------------------------------------------------------------------------- exit 0
@pytest.mark.parametrize("cmd", ["ingest", "train", "segment", "evaluate", "export", "bench", "run", "info"])
def test_every_command_has_help_with_defaults(capsys, cmd):
    code, out, _ = run_cli(capsys, cmd, "--help")
    assert code == 0
    assert "--config" in out
    if cmd not in ("info",):
        assert "default" in out, f"`mpfpipe {cmd} --help` shows no defaults"


def test_version_and_group_help(capsys):
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0 and "run" in out and "info" in out
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and "mpfpipe" in out


def test_dry_run_prints_resolved_steps(capsys):
    code, out, _ = run_cli(capsys, "run", str(QUICKSTART), "--dry-run", "--set", "iterations=3", "--set",
                           "size=64x64")
    assert code == 0
    plan = json.loads(out)
    assert plan["workflow"]["params"]["iterations"] == 3  # typed, not the string "3"
    train = next(s for s in plan["steps"] if s["kind"] == "train")
    assert train["options"]["epochs"] == 3


# ---------------------------------------------------------------------------------------------- exit 2
@pytest.mark.parametrize("argv, needle", [
    (["run"], "Missing argument"),
    (["run", str(QUICKSTART), "--bogus"], "No such option"),
    (["run", str(QUICKSTART), "--set", "novalue"], "KEY=VALUE"),
    (["run", str(QUICKSTART), "--resume", "--overwrite"], "not both"),
    (["run", str(QUICKSTART), "--workers", "0"], "--workers"),
    (["info"], "Missing argument"),
    (["frobnicate"], "No such command"),
])
def test_usage_errors_exit_2(capsys, argv, needle):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2, (out, err)
    assert needle in err
    assert "Traceback" not in err


# ---------------------------------------------------------------------------------------------- exit 1
def test_workflow_errors_exit_2_and_runtime_errors_exit_1_with_one_message(capsys, tmp_path, bad_workflow):
    """A workflow's mistakes are usage errors (exit 2) as on the command line; a bad file is a runtime error."""
    cases = [
        (["run", str(tmp_path / "missing.yaml")], "workflow file"),
        (["run", str(QUICKSTART), "--set", "itertions=3", "--dry-run"], "unknown parameter 'itertions'"),
        (["run", bad_workflow("name: x\nsteps:\n  - trian: {}\n"), "--dry-run"], "unknown step 'trian'"),
        (["run", bad_workflow("name: x\nsteps:\n  - ingest: {source: synthetic:em, colour: red}\n"), "--dry-run"],
         "unknown option 'colour'"),
        (["run", bad_workflow("params: {data: /nonexistent/isbi}\nsteps:\n"
                              "  - ingest: {source: '${data}/train-volume.tif'}\n"), "--dry-run"],
         "data path /nonexistent/isbi/train-volume.tif not found; set it with --set data=PATH"),
        (["run", bad_workflow("steps:\n  - train: {epochs: '${iters}'}\n"), "--dry-run"],
         "${iters} is not a parameter"),
        (["run", bad_workflow("steps: [\n"), "--dry-run"], "not valid YAML"),
        (["run", str(ROOT / "workflows" / "isbi2012-membranes.yaml"), "--set", "data=/nonexistent", "--dry-run"],
         "--set data=PATH"),
        (["info", str(tmp_path / "nothing.safetensors")], "not found"),
        (["info", str(QUICKSTART)], "not an mpfpipe model file"),
        (["info", str(tmp_path)], "not an mpfpipe model file, dataset, segmentation output or run folder"),
    ]
    for argv, needle in cases:
        code, out, err = run_cli(capsys, *argv)
        assert code == (1 if argv[0] == "info" else 2), (argv, out, err)
        line = one_error_line(err)
        assert line.startswith("error: ") and needle in line, (argv, line)


def test_existing_run_folder_is_refused(capsys, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "something.txt").write_text("not a run")
    code, _, err = run_cli(capsys, "run", str(QUICKSTART), "--out", str(run))
    assert code == 1 and "not an mpfpipe run folder" in one_error_line(err)
    (run / "something.txt").unlink()
    (run / "workflow.json").write_text('{"format": "mpfpipe-run"}')  # how mpfpipe knows its run folders
    code, _, err = run_cli(capsys, "run", str(QUICKSTART), "--out", str(run))
    assert code == 1 and "pass --resume to continue it" in one_error_line(err)
    code, _, err = run_cli(capsys, "run", str(QUICKSTART), "--out", str(run), "--resume")
    assert code == 1 and "cannot resume" in one_error_line(err)


def test_debug_shows_the_traceback(capsys):
    code, _, err = run_cli(capsys, "--debug", "run", str(QUICKSTART), "--set", "nope=1", "--dry-run")
    assert code == 2
    assert "Traceback" in err and "WorkflowError" in err
    assert err.strip().splitlines()[-1].startswith("error: unknown parameter 'nope'")


# ---------------------------------------------------------------------------------------------- --config
def test_config_file_supplies_options(capsys, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"set": ["iterations=7", "n_images=4"], "dry-run": True,
                                   "out": str(tmp_path / "r")}))
    code, out, err = run_cli(capsys, "run", str(QUICKSTART), "--config", str(cfg))
    assert code == 0, err
    plan = json.loads(out)
    assert plan["workflow"]["params"]["iterations"] == 7 and plan["workflow"]["params"]["n_images"] == 4
    assert plan["run_dir"] == str(tmp_path / "r")
    # the command line wins over the config file
    code, out, _ = run_cli(capsys, "run", str(QUICKSTART), "--config", str(cfg), "--out", str(tmp_path / "x"))
    assert code == 0 and json.loads(out)["run_dir"] == str(tmp_path / "x")
    # an unknown key in the config file is a usage error naming it
    bad = tmp_path / "bad.yaml"
    bad.write_text("iterations: 3\n")
    code, _, err = run_cli(capsys, "run", str(QUICKSTART), "--config", str(bad))
    assert code == 2 and "unknown option 'iterations'" in err


def test_info_on_a_dataset_with_config_json(capsys, tmp_path):
    from mpfpipe.data import synth_em
    ds = synth_em(tmp_path / "em.zarr", n_images=3, size=(32, 40), split=(0.67, 0.33))
    cfg = tmp_path / "info.yaml"
    cfg.write_text("json: true\n")
    code, out, err = run_cli(capsys, "info", str(ds), "--config", str(cfg))
    assert code == 0, err
    d = json.loads(out)
    assert d["kind"] == "dataset" and d["images"] == 3 and d["classes"] == ["cell", "membrane"]
    assert d["sizes"]["max"] == [32, 40] and sum(d["class_pixels"].values()) == 3 * 32 * 40
    assert d["splits"]["train"] + d["splits"]["val"] == 3
    code, out, _ = run_cli(capsys, "info", str(ds))
    assert code == 0 and "class pixels" in out and "splits" in out


def test_console_script_exit_codes(tmp_path):
    """The installed `mpfpipe` entry point (a real process): 0, 1 and 2."""
    exe = Path(sys.executable).parent / "mpfpipe"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from mpfpipe.cli import main; main()"]
    ok = subprocess.run([*cmd, "run", str(QUICKSTART), "--dry-run"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([*cmd, "info", str(tmp_path / "nothing.safetensors")], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 1 and bad.stderr.strip().startswith("error: ") and "not found" in bad.stderr
    wf = subprocess.run([*cmd, "run", str(QUICKSTART), "--set", "x=1", "--dry-run"], capture_output=True,
                        text=True, timeout=120)  # a workflow's usage error is one, as on the command line
    assert wf.returncode == 2 and wf.stderr.strip().startswith("error: unknown parameter 'x'")
    usage = subprocess.run([*cmd, "run"], capture_output=True, text=True, timeout=120)
    assert usage.returncode == 2
