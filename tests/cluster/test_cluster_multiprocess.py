"""A real multi-process cluster: `dask scheduler` + two `dask worker` processes on loopback, `mpfpipe train
--scheduler ...` as its own process, one worker SIGKILLed mid-run. The run must finish with bit-for-bit the
weights of an undisturbed LocalCluster run with the same threads per worker (one Dask thread and one
Numba/BLAS thread each). The TLS variant does the same over tls:// with a private CA from
deploy/tls/make-certs.sh: the scheduler and workers are given their certificates, and `mpfpipe train` gets
its TLS settings from the distributed config (DASK_CONFIG=dask-tls-client.yaml), no mpfpipe option; without
that config the same command is refused with exit 1 and one message. Subprocesses are always killed."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DASK = str(BIN / "dask") if (BIN / "dask").exists() else shutil.which("dask")
MPFPIPE = [str(BIN / "mpfpipe")] if (BIN / "mpfpipe").exists() else \
    [sys.executable, "-c", "from mpfpipe.cli import main; main()"]
THREADS = {v: "1" for v in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
EPOCHS = 20  # long enough that the watcher (a TLS client, slow to connect on a loaded machine) sees a task
OPTS = dict(net="steel", maps=4, hidden=8, optimizer="gd", epochs=EPOCHS, seed=5)
CLI_OPTS = ["--net", "steel", "--maps", "4", "--hidden", "8", "--optimizer", "gd", "--epochs", str(EPOCHS),
            "--seed", "5", "--no-progress"]
CROP = 48
CROPS = [(0, 0, 0), (4, 100, 200), (8, 300, 50), (12, 200, 400), (16, 400, 300), (19, 50, 450)]

pytestmark = pytest.mark.skipif(DASK is None, reason="no `dask` executable next to this Python or on PATH")


def env(**extra):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("DASK_", "MPF_"))}
    e.update(THREADS)
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    e.update(extra)
    return e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc):
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


def wait_for(pred, proc, what, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what}: process exited early ({proc.returncode})")
        time.sleep(0.05)
    pytest.fail(f"{what}: not within {timeout:.0f} s")


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    """Six 48x48 crops of the ISBI 2012 training stack (synthetic EM slices when the real data is absent)."""
    from mpfpipe.data import ingest, synth_em
    root = tmp_path_factory.mktemp("crops")
    shared = ROOT.parent / "shared" / "data" / "isbi2012"
    if not shared.is_dir():
        return synth_em(root / "crops.zarr", n_images=len(CROPS), size=(CROP, CROP), seed=3)
    import tifffile
    vol = tifffile.imread(shared / "train-volume.tif")
    lab = tifffile.imread(shared / "train-labels.tif")
    np.save(root / "img.npy", np.stack([vol[z, r:r + CROP, c:c + CROP] for z, r, c in CROPS]))
    np.save(root / "lab.npy", np.stack([lab[z, r:r + CROP, c:c + CROP] for z, r, c in CROPS]))
    return ingest([root / "img.npy", root / "lab.npy"], root / "crops.zarr", positive=0,
                  class_names=["cell", "membrane"])


@pytest.fixture(scope="module")
def reference(crops, tmp_path_factory):
    """The undisturbed run: embedded LocalCluster, 2 worker processes x 1 thread."""
    from mpfpipe.train import train
    out = tmp_path_factory.mktemp("ref") / "ref.safetensors"
    res = train(crops, out=out, workers=2, threads=1, progress=False, **OPTS)
    assert res.status == "finished"
    return res.x, out


def _certs(tmp_path):
    if not shutil.which("openssl"):
        pytest.skip("the openssl CLI is not installed")
    certs = tmp_path / "certs"
    res = subprocess.run(["bash", str(ROOT / "deploy" / "tls" / "make-certs.sh"), str(certs)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return certs


def _kill_worker_mid_task(address, certs, workers, train) -> int:
    """SIGKILL the worker process that is running an mpfpipe gradient task; returns its index."""
    from distributed import Client
    from distributed.security import Security

    sec = None
    if certs is not None:
        sec = Security(tls_ca_file=str(certs / "ca.pem"), tls_client_cert=str(certs / "client.pem"),
                       tls_client_key=str(certs / "client-key.pem"), require_encryption=True)
    with Client(address, security=sec, timeout=20, set_as_default=False) as client:
        names = {addr: w["name"] for addr, w in client.scheduler_info(n_workers=-1)["workers"].items()}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for addr, keys in client.processing().items():
                if any(str(k).startswith("mpf-grad") for k in keys) and addr in names:
                    victim = int(str(names[addr])[1:])
                    os.kill(workers[victim].pid, signal.SIGKILL)
                    return victim
            if train.poll() is not None:
                pytest.fail("training ended before a gradient task was caught running")
            time.sleep(0.002)
    pytest.fail("no gradient task was caught running")


@pytest.mark.parametrize("protocol", ["tcp", "tls"])
def test_train_on_external_cluster_survives_a_killed_worker(protocol, crops, reference, tmp_path):
    from mpfpipe.model import load_model
    from mpfpipe.train.checkpoint import load_checkpoint

    ref_x, ref_model = reference
    port = free_port()
    sfile = tmp_path / "scheduler.json"
    sched_cmd = [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard",
                 "--scheduler-file", str(sfile)]
    worker_env, client_env, certs = env(), env(), None
    if protocol == "tls":
        certs = _certs(tmp_path)
        sched_cmd += ["--protocol", "tls", "--tls-ca-file", str(certs / "ca.pem"),
                      "--tls-cert", str(certs / "scheduler.pem"), "--tls-key", str(certs / "scheduler-key.pem")]
        worker_env = env(DASK_CONFIG=str(certs / "dask-tls-worker.yaml"))
        client_env = env(DASK_CONFIG=str(certs / "dask-tls-client.yaml"))
    procs = []
    logs = []

    def start(cmd, e, name):
        log = open(tmp_path / f"{name}.log", "w")
        logs.append(log)
        p = subprocess.Popen(cmd, env=e, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                             cwd=tmp_path)
        procs.append(p)
        return p

    try:
        sched = start(sched_cmd, env(DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION=str(protocol == "tls")),
                      "scheduler")
        wait_for(lambda: sfile.exists() and sfile.stat().st_size > 0, sched, "scheduler file", 60)
        address = json.loads(sfile.read_text())["address"]
        assert address == f"{protocol}://127.0.0.1:{port}"
        workers = [start([DASK, "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host",
                          "127.0.0.1", "--name", f"w{i}", "--local-directory", str(tmp_path / f"w{i}")],
                         worker_env, f"worker{i}") for i in range(2)]

        out = tmp_path / "m.safetensors"
        log = tmp_path / "m.log.jsonl"
        train = start([*MPFPIPE, "train", str(crops), *CLI_OPTS, "--scheduler", address, "--workers", "2",
                       "--timeout", "30", "--out", str(out)], client_env, "train")
        # Once the first step is logged, SIGKILL a worker while it computes a gradient task (watched through a
        # client of our own; over TLS it needs the client certificate too).
        wait_for(lambda: log.exists() and log.read_text().count("\n") >= 1, train, "first training step", 120)
        victim = _kill_worker_mid_task(address, certs if protocol == "tls" else None, workers, train)
        steps_at_kill = log.read_text().count("\n")
        assert steps_at_kill < EPOCHS, "the run finished before the worker was killed"
        assert train.wait(timeout=180) == 0, (tmp_path / "train.log").read_text()[-3000:]
        assert workers[victim].wait(timeout=10) == -signal.SIGKILL
        assert workers[1 - victim].poll() is None, "the surviving worker died"

        arrays, meta = load_checkpoint(tmp_path / "m.ckpt.npz")
        assert meta["status"] == "finished" and meta["step"] == EPOCHS
        assert np.array_equal(arrays["x"], ref_x), "weights differ from the undisturbed LocalCluster run"
        got, want = load_model(out).params, load_model(ref_model).params
        assert all(np.array_equal(got[k], want[k]) for k in want)
        assert f"scheduler {address}" in (tmp_path / "train.log").read_text()

        if protocol == "tls":
            # the same command without the client certificate config: refused, exit 1, one message
            res = subprocess.run([*MPFPIPE, "train", str(crops), *CLI_OPTS, "--scheduler", address, "--timeout", "3",
                                  "--out", str(tmp_path / "refused.safetensors")], env=env(), capture_output=True,
                                 text=True, timeout=120)
            assert res.returncode == 1, res.stderr
            lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
            assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in res.stderr, res.stderr
            print(f"refused without the certificate: {lines[0]}")
            assert not (tmp_path / "refused.safetensors").exists()
    finally:
        for p in reversed(procs):
            stop(p)
        for f in logs:
            f.close()
