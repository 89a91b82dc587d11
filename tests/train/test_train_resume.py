"""Checkpoints and exact resume: a run stopped (max_steps) or killed (SIGKILL of the driver process) and resumed
ends with the undisturbed run's parameters, bit for bit."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mpfpipe.data import AugmentSpec
from mpfpipe.errors import OutputExistsError, TrainingError
from mpfpipe.train import train
from mpfpipe.train.checkpoint import load_checkpoint

CASES = {
    "gd": dict(optimizer="gd", epochs=3, pause=1),
    "lbfgs": dict(optimizer="lbfgs", epochs=4, pause=2),
    # 4 train images, batches of 2 -> 2 steps per epoch; pausing after 3 stops mid-epoch; augmented
    "sgd": dict(optimizer="sgd", epochs=2, batch_size=2, pause=3, augment=AugmentSpec(flip=True, rot90=True)),
    "adam": dict(optimizer="adam", epochs=2, batch_size=2, pause=3, lr=0.01),  # moments + step count resumed
}


@pytest.mark.parametrize("name", list(CASES))
def test_stop_and_resume_is_exact(name, isbi_crops, small_net, cluster2, tmp_path):
    opts = dict(CASES[name])
    pause = opts.pop("pause")
    common = dict(client=cluster2.client, progress=False, seed=2, **opts)
    full = train(isbi_crops, small_net, out=tmp_path / "full.safetensors", **common)
    assert full.status == "finished"
    part = train(isbi_crops, small_net, out=tmp_path / "part.safetensors", max_steps=pause, **common)
    assert part.status == "paused" and len(part.records) == pause
    assert not (tmp_path / "part.safetensors").exists()
    arrays, meta = load_checkpoint(tmp_path / "part.ckpt.npz")
    assert meta["step"] == pause and np.array_equal(arrays["x"], part.x)
    if name == "lbfgs":
        assert arrays["S"].shape[0] >= 1  # the L-BFGS history is in the checkpoint
    with pytest.raises(TrainingError, match="--resume"):
        train(isbi_crops, small_net, out=tmp_path / "part.safetensors", **common)
    done = train(isbi_crops, small_net, out=tmp_path / "part.safetensors", resume=True, **common)
    assert done.status == "finished"
    assert np.array_equal(done.x, full.x)
    assert np.array_equal(done.best_x, full.best_x)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in full.records]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in done.records] == strip
    lines = (tmp_path / "part.log.jsonl").read_text().splitlines()
    assert [{k: v for k, v in json.loads(s).items() if k != "seconds"} for s in lines] == strip
    with pytest.raises(OutputExistsError):
        train(isbi_crops, small_net, out=tmp_path / "part.safetensors", resume=True, **common)


def test_stop_writes_the_best_model_of_a_paused_run(isbi_crops, small_net, cluster2, tmp_path, capsys):
    from mpfpipe.cli import main
    from mpfpipe.model import load_model
    from mpfpipe.params import ravel

    out = tmp_path / "m.safetensors"
    part = train(isbi_crops, small_net, out=out, client=cluster2.client, progress=False, optimizer="lbfgs",
                 epochs=6, seed=3, max_steps=3)
    assert part.status == "paused" and not out.exists() and part.best_x is not None
    cmd = ["train", str(isbi_crops), "--net", "steel", "--maps", "4", "--hidden", "8", "--optimizer", "lbfgs",
           "--epochs", "6", "--seed", "3", "--out", str(out), "--no-progress"]
    with pytest.raises(SystemExit) as exc:
        main(cmd + ["--stop"])
    assert exc.value.code == 1 and "pass --resume" in capsys.readouterr().err and not out.exists()
    with pytest.raises(SystemExit) as exc:  # a run that has no checkpoint
        main(cmd[:-2] + [str(tmp_path / "other.safetensors"), "--no-progress", "--stop"])
    assert exc.value.code == 1 and "nothing to stop" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # no cluster options: stopping needs none
        main(cmd + ["--resume", "--stop"])
    assert exc.value.code == 0 and "stopped after 3 step(s)" in capsys.readouterr().out
    model = load_model(out)
    assert np.array_equal(ravel(small_net, model.params, np.float32), part.best_x.astype(np.float32))
    assert model.provenance["training"]["status"] == "stopped" and model.provenance["training"]["steps"] == 3
    # the run goes on from the same checkpoint afterwards (the stopped model is replaced only with --overwrite)
    done = train(isbi_crops, small_net, out=out, client=cluster2.client, progress=False, optimizer="lbfgs",
                 epochs=6, seed=3, resume=True, overwrite=True)
    assert done.status == "finished" and len(done.records) == 6


def test_resume_with_other_options_is_refused(isbi_crops, small_net, cluster2, tmp_path):
    common = dict(client=cluster2.client, progress=False, out=tmp_path / "m.safetensors")
    train(isbi_crops, small_net, optimizer="gd", epochs=2, max_steps=1, **common)
    with pytest.raises(TrainingError, match="optimizer"):
        train(isbi_crops, small_net, optimizer="lbfgs", epochs=2, resume=True, **common)


def test_driver_killed_then_resumed(isbi_crops, small_net, cluster2, tmp_path):
    """SIGKILL the driver process (CLI, joined to the running cluster) after three logged steps; --resume finishes
    the run with the undisturbed run's parameters."""
    epochs = 8
    common = dict(optimizer="lbfgs", epochs=epochs, seed=4)
    ref = train(isbi_crops, small_net, out=tmp_path / "ref.safetensors", client=cluster2.client, progress=False,
                **common)
    out = tmp_path / "killed.safetensors"
    cmd = [sys.executable, "-c", "from mpfpipe.cli import main; main()", "train", str(isbi_crops), "--net", "steel",
           "--maps", "4", "--hidden", "8", "--optimizer", "lbfgs", "--epochs", str(epochs), "--seed", "4",
           "--out", str(out), "--scheduler", cluster2.address, "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = tmp_path / "killed.log.jsonl"
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            # step k's log line follows the start of its checkpoint's background write, which waits for step
            # k-1's: three lines, so step 2's checkpoint is on disk (two lines left it in flight now and then)
            if log.exists() and len(log.read_text().splitlines()) >= 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    _, meta = load_checkpoint(tmp_path / "killed.ckpt.npz")
    assert 2 <= meta["step"] < epochs
    assert not out.exists()
    done = train(isbi_crops, small_net, out=out, client=cluster2.client, progress=False, resume=True, **common)
    assert done.status == "finished"
    assert np.array_equal(done.x, ref.x)
    from mpfpipe.model import load_model
    a, b = load_model(out).params, load_model(tmp_path / "ref.safetensors").params
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_parse_duration():
    from mpfpipe.train.driver import parse_duration
    assert parse_duration(None) is None
    assert parse_duration(90) == 90.0
    assert parse_duration("7200") == 7200.0
    assert parse_duration("90m") == 5400.0
    assert parse_duration("1.5h") == 5400.0
    assert parse_duration("30s") == 30.0
    for bad in ("2 days", "h", "-5m", "0"):
        with pytest.raises(TrainingError, match="max_time"):
            parse_duration(bad)


def test_time_budget_stops_and_resume_extends_it(isbi_crops, small_net, cluster2, tmp_path):
    """A spent budget stops before the next step and still writes the model; the budget counts the whole run, so
    a resume with the same budget takes no step and a resume with a larger one continues."""
    common = dict(client=cluster2.client, progress=False, optimizer="gd", epochs=50, seed=1)
    out = tmp_path / "m.safetensors"
    res = train(isbi_crops, small_net, out=out, max_time=1e-6, **common)
    assert res.status == "time limit" and len(res.records) == 1 and out.exists()
    assert res.records[0]["val_balanced_error"] is not None
    again = train(isbi_crops, small_net, out=out, max_time=1e-6, resume=True, overwrite=True, **common)
    assert again.status == "time limit" and len(again.records) == 1
    more = train(isbi_crops, small_net, out=out, max_time=1e-6 + res.summary["timing"]["wall"] * 50, resume=True,
                 overwrite=True, epochs=3, **{k: v for k, v in common.items() if k != "epochs"})
    assert more.status == "finished" and len(more.records) == 3
