"""Stopping `mpfpipe train` mid-run: Ctrl-C (SIGINT to the whole process group, as a terminal sends it, workers
included), or SIGTERM as `scancel`, a SLURM time limit or Kubernetes send it (to the driver alone, or to every
process of the job). Each gives one line saying where the checkpoint is and how to resume, exit 128 + the signal,
no traceback; the run then resumes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest


@pytest.mark.parametrize("sig,group", [(signal.SIGINT, True), (signal.SIGTERM, False), (signal.SIGTERM, True)],
                         ids=["ctrl-c", "sigterm-driver", "sigterm-group"])
def test_stop_during_train_is_one_line_and_resumable(tmp_path, sig, group):
    from mpfpipe.data import synth_em
    data = synth_em(tmp_path / "d.zarr", n_images=2, size=(48, 48))
    out, ckpt = tmp_path / "m.safetensors", tmp_path / "m.ckpt.npz"
    argv = [sys.executable, "-m", "mpfpipe", "train", str(data), "--net", "steel", "--maps", "2", "--hidden", "4",
            "--epochs", "100000", "--workers", "1", "--out", str(out), "--no-progress"]
    env = {**os.environ, "MPFPIPE_NO_REEXEC": "1"}
    p = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for _ in range(1200):  # until the first step is checkpointed (at most 2 minutes)
            if ckpt.exists() or p.poll() is not None:
                break
            time.sleep(0.1)
        assert ckpt.exists(), "no checkpoint was written"
        if group:
            os.killpg(p.pid, sig)
        else:
            p.send_signal(sig)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith(("cluster:", "data:"))]
    assert p.returncode == 128 + sig and "Traceback" not in err and "leaked" not in err, err
    assert lines == [f"interrupted: the checkpoint {ckpt} holds the last finished step; continue with the same "
                     "command plus --resume (or --resume --stop to write its best model now)"], err
    r = subprocess.run(argv + ["--resume", "--stop"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and out.is_file(), r.stderr


def test_a_dropped_interrupt_is_silent_only_once_a_stop_was_asked_for(monkeypatch, capsys):
    """The handler's KeyboardInterrupt can land in a finaliser, which drops and prints it: after a signal that
    print is noise (the stop flag ends the run at its next step); anything else is still printed."""
    from mpfpipe import _stop
    from mpfpipe.cli import _unraisable

    class Finaliser:
        def __init__(self, exc):
            self.exc = exc

        def __del__(self):
            raise self.exc

    monkeypatch.setattr(sys, "unraisablehook", _unraisable)
    monkeypatch.setattr(_stop, "_requested", True)
    Finaliser(KeyboardInterrupt())
    assert capsys.readouterr().err == ""
    Finaliser(ValueError("a real finaliser bug"))
    assert "a real finaliser bug" in capsys.readouterr().err
    monkeypatch.setattr(_stop, "_requested", False)
    Finaliser(KeyboardInterrupt())
    assert "KeyboardInterrupt" in capsys.readouterr().err
