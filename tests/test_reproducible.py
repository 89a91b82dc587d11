"""Reproducible mode (mpfpipe._reproducible): a whole steel training step (loss and every gradient), inference and
three L-BFGS steps on a real NEU-Seg image, and an n3 training step and inference on part of it, give the same
bits in processes built for different instruction sets (Numba kernels compiled for AVX2 'haswell', numpy's AVX-512
loops switched off and OpenBLAS's Haswell kernel, against the host's own build and OpenBLAS kernel), and with
OpenBLAS's kernel pinned against the default. And the cluster-start line on a pool of workers with different CPUs."""
import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np

from mpfpipe import _reproducible
from mpfpipe._runtime import worker_env

REPO = Path(__file__).resolve().parents[1]

_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from PIL import Image
    from mpfpipe import _reproducible
    from mpfpipe.arch import load_net
    from mpfpipe.fragment import dense_forward, dense_loss_grad
    from mpfpipe.params import init_params, ravel, unravel
    from mpfpipe.train.optim import OptimConfig, init_state, lbfgs_step

    out, data = sys.argv[1], sys.argv[2]
    net = load_net("steel")
    img = np.asarray(Image.open(data + "/images/000002.jpg").convert("L"), np.float32)[20:157, 30:90] / 255.0
    lab = (np.asarray(Image.open(data + "/masks/000002.png"))[20:157, 30:90] > 0).astype(np.uint8)
    p = init_params(net, 0, np.float64)
    r = dense_loss_grad(net, p, img, lab, dtype=np.float32)
    res = {"loss": np.array([r.loss]), "out": dense_forward(net, p, img, dtype=np.float32)}
    res.update({"grad/" + k: v for k, v in r.grad.items()})
    n3 = load_net("n3")  # the register tiles and the fused output layer's GEMMs too
    q = init_params(n3, 0, np.float64)
    r3 = dense_loss_grad(n3, q, img[:100, :56], lab[:100, :56], dtype=np.float32)
    res.update({"n3/loss": np.array([r3.loss]), "n3/out": dense_forward(n3, q, img[:100, :56], dtype=np.float32)})
    res.update({"n3/grad/" + k: v for k, v in r3.grad.items()})

    def fg(x, need):
        q = dense_loss_grad(net, unravel(net, x, np.float64), img, lab, dtype=np.float32, grad=need)
        return q.loss, (ravel(net, q.grad) if need else None)

    cfg = OptimConfig(memory=5)
    st = init_state(ravel(net, p), cfg)
    st["f"], st["g"] = fg(st["x"], True)
    for _ in range(3):
        lbfgs_step(st, fg, cfg)
    res["lbfgs_weights"] = st["x"]
    np.savez(out, **res)
    with open(out + ".json", "w") as fh:
        json.dump({"blas": _reproducible.blas_cores(), "host": _reproducible.describe_host()}, fh)
""")

# numpy's CPU-dispatched loops above AVX2 (numpy 2.x names); unknown names are ignored with a warning
_NUMPY_AVX512 = "X86_V4 AVX512_ICL AVX512_SPR AVX512F AVX512_SKX"


def _run(tmp_path, cache, name, build, mode="1", **env_extra):
    """The script in a fresh process; ``build`` names its Numba cache (one per instruction-set target)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), NUMBA_CACHE_DIR=cache(build),
               NUMBA_NUM_THREADS="1", MPFPIPE_REPRODUCIBLE=mode)
    for var in ("NUMBA_CPU_NAME", "OPENBLAS_CORETYPE", "NPY_DISABLE_CPU_FEATURES"):
        env.pop(var, None)
    env.update(env_extra)
    out = tmp_path / f"{name}.npz"
    subprocess.run([sys.executable, "-W", "ignore", "-c", _SCRIPT, str(out),
                    str(REPO.parent / "shared" / "data" / "neu_seg" / "train")],
                   env=env, check=True, timeout=900)
    return np.load(out), json.loads(Path(str(out) + ".json").read_text())


def _same(a, b) -> list:
    """Keys whose arrays differ in any bit."""
    assert sorted(a.files) == sorted(b.files)
    return [k for k in a.files if not np.array_equal(a[k], b[k])]


def test_steel_training_is_bit_identical_on_avx2_and_on_this_cpu(shared_data, tmp_path, isa_cache):
    host, host_info = _run(tmp_path, isa_cache, "host", "host")
    avx2, avx2_info = _run(tmp_path, isa_cache, "haswell", "haswell", NUMBA_CPU_NAME="haswell",
                           NPY_DISABLE_CPU_FEATURES=_NUMPY_AVX512, OPENBLAS_CORETYPE="Haswell")
    pinned, pinned_info = _run(tmp_path, isa_cache, "pinned", "host", OPENBLAS_CORETYPE="Haswell")
    if "AVX-512" not in host_info["host"]["cpu"]:
        warnings.warn(f"this CPU ({host_info['host']['cpu']}) has no AVX-512: the test compares an AVX2 build "
                      "with the host's build only", stacklevel=1)
    for info in (host_info, avx2_info, pinned_info):
        assert info["host"]["reproducible"] is True
    assert avx2_info["host"]["numba"] == "haswell"
    assert avx2_info["blas"] == pinned_info["blas"] == ["Haswell"]  # OpenBLAS really ran its Haswell kernel
    assert len([k for k in host.files if k.startswith("grad/")]) == 10  # steel: 5 layers, weight and bias each
    assert len([k for k in host.files if k.startswith("n3/grad/")]) >= 10
    assert _same(host, avx2) == [] and _same(host, pinned) == []
    for key in host.files:
        assert np.isfinite(host[key]).all() and np.abs(host[key]).sum() > 0, key
    assert not np.array_equal(host["lbfgs_weights"], _steel_init()), "L-BFGS must have moved the weights"
    if host_info["blas"] != ["Haswell"]:  # the control: without the mode, OpenBLAS's kernel shows in the bits
        off, _ = _run(tmp_path, isa_cache, "off", "host", mode="0")
        off_pinned, _ = _run(tmp_path, isa_cache, "off-pinned", "host", mode="0", OPENBLAS_CORETYPE="Haswell")
        assert "lbfgs_weights" in _same(off, off_pinned)


def _steel_init():
    from mpfpipe.arch import load_net
    from mpfpipe.params import init_params, ravel
    net = load_net("steel")
    return ravel(net, init_params(net, 0, np.float64))


def test_mode_variables_reach_the_workers_we_start(monkeypatch):
    monkeypatch.delenv(_reproducible.ENV, raising=False)
    assert _reproducible.ENV not in worker_env(1)
    monkeypatch.setenv(_reproducible.ENV, "1")
    env = worker_env(2)
    assert env[_reproducible.ENV] == "1" and env["MPFPIPE_THREADS"] == "2"


def _host(cpu, blas, on=False, numba=None):
    return {"cpu": cpu, "numba": numba or cpu.split()[0], "blas": blas, "reproducible": on}


def test_pool_line_says_what_mixed_cpus_mean():
    same = {"a": _host("znver4 (AVX-512)", "SkylakeX"), "b": _host("znver4 (AVX-512)", "SkylakeX")}
    assert _reproducible.pool_line(same) is None
    assert _reproducible.pool_line({}) is None
    mixed = {"a": _host("znver4 (AVX-512)", "SkylakeX"), "b": _host("haswell (AVX2)", "Haswell"),
             "c": _host("haswell (AVX2)", "Haswell")}
    line = _reproducible.pool_line(mixed)
    assert line.startswith("workers on different CPUs (2 x haswell (AVX2), 1 x znver4 (AVX-512); "
                           "OpenBLAS kernels 2 x Haswell, 1 x SkylakeX)")
    assert "depend on which worker" in line and "--reproducible" in line and "\n" not in line
    line = _reproducible.pool_line({k: {**h, "reproducible": True} for k, h in mixed.items()})
    assert "reproducible mode is on" in line and "bit-identical" in line
    line = _reproducible.pool_line({k: {**h, "blas": "Haswell"} for k, h in mixed.items()})
    assert "share one OpenBLAS kernel" in line and "bit-identical" in line


def test_check_pool_on_a_real_cluster_in_reproducible_mode(monkeypatch):
    """Two real worker processes started by train's `connect` with the mode on: both run the fixed-order GEMMs;
    one CPU here, so no line (`pool_line` covers mixed pools)."""
    from mpfpipe.cluster import connect
    monkeypatch.setenv(_reproducible.ENV, "1")
    with connect(workers=2, threads=1) as handle:
        hosts = handle.client.run(_reproducible.describe_host)
        assert len(hosts) == 2
        assert all(h["reproducible"] is True for h in hosts.values()), hosts
        assert _reproducible.check_pool(handle.client) is None


def test_enable_switches_this_process_gemm(monkeypatch):
    from mpfpipe.kernels import _blas
    monkeypatch.setenv(_reproducible.ENV, "0")  # restored after the test, whatever enable() sets
    try:
        _blas.set_reproducible(False)
        assert not _reproducible.active()
        _reproducible.enable()
        assert _reproducible.active() and os.environ[_reproducible.ENV] == "1"
    finally:
        _blas.set_reproducible(False)


def test_dot_is_numpy_pairwise_sum():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(1001), rng.standard_normal(1001)
    assert _reproducible.dot(a, b) == float(np.add.reduce(a * b))
    assert _reproducible.dot(np.array([1.0, 2.0]), np.array([3.0, 4.0])) == 11.0
