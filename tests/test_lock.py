"""One writer per output (mpfpipe._lock), with real processes: a second writer refuses with one line naming the
holder; the lock of a killed holder is taken over; two real `segment` runs on one output never both write."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from mpfpipe._lock import LockedError, WriterLock, lock_path

HOLD = """
import sys, time
from mpfpipe._lock import WriterLock
lock = WriterLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(120)
"""


def _holder(out):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def _cli(*argv):
    env = {**os.environ, "MPFPIPE_NO_REEXEC": "1"}
    return subprocess.run([sys.executable, "-m", "mpfpipe", *map(str, argv)], capture_output=True, text=True,
                          env=env, timeout=300)


def test_second_writer_refuses_then_takes_over_from_a_killed_holder(tmp_path):
    out = tmp_path / "d.zarr"
    proc = _holder(out)
    try:
        holder = json.loads(lock_path(out).read_text())
        assert (holder["pid"], holder["host"]) == (proc.pid, socket.gethostname())
        r = _cli("ingest", "synthetic:em", out, "--n-images", "1", "--size", "32x32", "--no-progress")
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and len(lines) == 1, r.stderr
        assert f"dataset {out} is being written by another mpfpipe process (pid {proc.pid} on " in lines[0]
        assert not out.exists()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert lock_path(out).exists()  # the killed holder could not clean up
    r = _cli("ingest", "synthetic:em", out, "--n-images", "1", "--size", "32x32", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert out.is_dir() and not lock_path(out).exists()


def test_lock_of_a_reused_pid_or_another_host(tmp_path):
    out = tmp_path / "x"
    me = WriterLock(out)
    # our own pid, but another process start time: the holder is gone, its pid reused
    lock_path(out).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "pid_start": "1"}))
    me.acquire()
    me.release()
    assert not lock_path(out).exists()
    lock_path(out).write_text(json.dumps({"host": "elsewhere", "pid": 1, "started": "then"}))
    with pytest.raises(LockedError, match="pid 1 on elsewhere, since then"):
        WriterLock(out).acquire()
    old = time.time() - 3600  # not refreshed for an hour: the other host's holder is gone
    os.utime(lock_path(out), (old, old))
    WriterLock(out).acquire().release()


def test_two_real_segment_runs_on_one_output(tmp_path):
    """Started together on the same output, exactly one segments; the other refuses naming it (or, if it
    started after the first finished, finds the output complete). Never both."""
    from mpfpipe.arch import preset
    from mpfpipe.data import synth_em
    from mpfpipe.model import Model, save_model
    from mpfpipe.params import init_params
    net = preset("n4", maps=4, hidden=8)
    model = save_model(Model(net, init_params(net, 0), normalisation={"mean": [128.0], "std": [50.0]}),
                       tmp_path / "m.safetensors")
    data = synth_em(tmp_path / "d.zarr", n_images=6, size=(192, 192))
    out = tmp_path / "s.ome.zarr"
    env = {**os.environ, "MPFPIPE_NO_REEXEC": "1"}
    argv = [sys.executable, "-m", "mpfpipe", "segment", str(model), str(data), str(out), "--workers", "0",
            "--quiet", "--block", "1,64,64"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for i in range(2)]
    results = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 1], results
    err = next(r[2] for r in results if r[0] == 1).strip()
    assert len(err.splitlines()) == 1 and ("being written by another mpfpipe process" in err
                                           or "is a complete segmentation" in err), err
    assert not lock_path(out).exists()
