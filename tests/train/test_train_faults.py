"""Faults: a worker process SIGKILLed mid-iteration (its tasks are recomputed elsewhere, same final weights);
a scheduler that refuses connections (clear error, exit 1, checkpoint untouched)."""
from __future__ import annotations

import os
import signal
import socket
import threading
import time

import numpy as np
import pytest

from mpfpipe.cli import main
from mpfpipe.errors import ClusterError
from mpfpipe.train import train
from mpfpipe.train.checkpoint import save_checkpoint


def test_worker_killed_mid_iteration(isbi_crops, small_net, make_cluster, tmp_path):
    common = dict(optimizer="gd", epochs=5, seed=5, progress=False)
    with make_cluster(2, threads=1) as h:
        ref = train(isbi_crops, small_net, out=tmp_path / "ref.safetensors", client=h.client, **common)
        pids = h.worker_pids()
        log = tmp_path / "k.log.jsonl"
        killed = {}

        def killer():  # once step 1 is logged, kill a worker while it computes a gradient task
            deadline = time.time() + 120
            while time.time() < deadline and not killed:
                if log.exists() and log.read_text().count("\n") >= 1:
                    for addr, keys in h.client.processing().items():
                        if any(str(k).startswith("mpf-grad") for k in keys) and addr in pids:
                            os.kill(pids[addr], signal.SIGKILL)
                            killed[addr] = [str(k) for k in keys]
                            return
                time.sleep(0.002)
        t = threading.Thread(target=killer, daemon=True)
        t.start()
        res = train(isbi_crops, small_net, out=tmp_path / "k.safetensors", client=h.client, **common)
        t.join(timeout=5)
        assert killed, "no gradient task was caught running"
        assert res.status == "finished"
        assert np.array_equal(res.x, ref.x)


def _refused_address():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    return f"tcp://127.0.0.1:{port}"


def test_unreachable_scheduler(isbi_crops, small_net, tmp_path, capsys):
    addr = _refused_address()
    ckpt = tmp_path / "m.ckpt.npz"
    save_checkpoint(ckpt, {"x": np.arange(3.0)}, {"step": 3})  # --overwrite replaces only a real checkpoint
    before = ckpt.read_bytes()
    with pytest.raises(ClusterError, match="cannot reach the Dask scheduler at tcp://127.0.0.1"):
        train(isbi_crops, small_net, out=tmp_path / "m.safetensors", scheduler=addr, timeout=2, overwrite=True,
              progress=False)
    with pytest.raises(SystemExit) as exc:
        main(["train", str(isbi_crops), "--net", "steel", "--maps", "4", "--hidden", "8", "--out",
              str(tmp_path / "m.safetensors"), "--scheduler", addr, "--timeout", "2", "--overwrite"])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "error:" in err and addr in err and "Traceback" not in err
    assert ckpt.read_bytes() == before
