"""A segmentation killed mid-way (SIGKILL of the whole process group: driver, scheduler and workers) and rerun
gives output identical to an undisturbed run; the CLI front end."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import zarr

from mpfpipe.arch import preset
from mpfpipe.cli import main
from mpfpipe.model import Model, save_model
from mpfpipe.params import init_params
from mpfpipe.segment import read_done, segment


@pytest.fixture()
def job(tmp_path):
    net = preset("n4", maps=3, hidden=6)
    save_model(Model(net, init_params(net, 11), normalisation={"mean": [128.0], "std": [50.0]}),
               tmp_path / "m.safetensors")
    vol = np.random.default_rng(5).integers(0, 255, size=(2, 64, 64)).astype(np.uint8)
    zarr.save_array(str(tmp_path / "v.zarr"), vol)
    return tmp_path


def _count_done(out):
    root = out / "done" / "c"
    return sum(len(files) for _, _, files in os.walk(root)) if root.exists() else 0


def test_sigkill_then_rerun_equals_undisturbed_run(job):
    out = job / "killed.zarr"
    cmd = [sys.executable, "-c", "from mpfpipe.cli import main; main()", "segment", str(job / "m.safetensors"),
           str(job / "v.zarr"), str(out), "--block", "1,16,16", "--workers", "1", "--threads", "1",
           "--levels", "3", "--quiet"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while _count_done(out) < 3 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the group we started: driver, scheduler, nanny, worker
        proc.wait()
    done = read_done(out)
    assert 0 < done.sum() < done.size, "the run was not killed mid-way"
    assert zarr.open_group(str(out), mode="r").attrs["mpfpipe"]["complete"] is False

    res = segment(job / "m.safetensors", job / "v.zarr", out, block=(1, 16, 16), workers=0, progress=False, levels=3)
    assert res.skipped == done.sum() and res.done == done.size - done.sum()
    ref = job / "ref.zarr"
    segment(job / "m.safetensors", job / "v.zarr", ref, block=(1, 16, 16), workers=0, progress=False, levels=3)
    a, b = zarr.open_group(str(out), mode="r"), zarr.open_group(str(ref), mode="r")
    for lv in "012":  # every pyramid level consistent with level 0
        assert np.array_equal(a[lv][...], b[lv][...])
        assert np.array_equal(a[f"labels/segmentation/{lv}"][...], b[f"labels/segmentation/{lv}"][...])
    assert a.attrs["mpfpipe"]["complete"] is True


def test_cli_segment_summary_and_refusal(job, capsys):
    args = ["segment", str(job / "m.safetensors"), str(job / "v.zarr"), str(job / "o.zarr"), "--block", "40,40",
            "--workers", "0", "--quiet", "--json"]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["done"] == 8 and summary["failed"] == 0 and summary["voxels"] == 2 * 64 * 64
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 1
    assert "--overwrite" in capsys.readouterr().err
