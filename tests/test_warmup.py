"""`mpfpipe warmup`: on a fresh cache, processes started together compile each kernel group exactly once between
them, and afterwards steel / n3 / n4 training and inference load every kernel from the cache (no compile)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from compile_spy import SPY

from mpfpipe.arch import load_net
from mpfpipe.data.warm import INSTANCE_JOBS
from mpfpipe.warmup import JOBS, jobs_for

MISSES = r"""
import json, numpy as np
from numba.core.registry import CPUDispatcher
from mpfpipe import kernels
from mpfpipe.arch import load_net
from mpfpipe.fragment import dense_forward, dense_loss_grad
from mpfpipe.kernels import (_act, _blas, _block, _convpool, _direct, _head, _pool, _taps, _tiles, _wino, _wtrans,
                             _xent, _zpool)
from mpfpipe.kernels._par import Twin, variant
from mpfpipe.params import init_params
for mode in ("serial", "parallel"):
    with variant(mode):
        for name in ("steel", "n3", "n4"):
            net = load_net(name)
            p = init_params(net, 0, np.float32)
            for size in ((19, 17), (64, 60)):  # n3 / n4: tap GEMMs only, then the register tiles too
                img = np.random.default_rng(0).standard_normal((1, *size)).astype(np.float32)
                dense_loss_grad(net, p, img, (img[0] > 0).astype(np.uint8), dtype=np.float32)
                dense_forward(net, p, img, dtype=np.float32)
        for name, size in (("aniso", (3, 9, 10)), ("n337", (1, 2, 2))):  # 3D nets: the z pooling too
            net = load_net(name)
            p = init_params(net, 0, np.float32)
            vol = np.random.default_rng(0).standard_normal((1, *size)).astype(np.float32)
            dense_loss_grad(net, p, vol, (vol[0] > 0).astype(np.uint8), dtype=np.float32)
            dense_forward(net, p, vol, dtype=np.float32)
def dispatchers(m):  # a parallel kernel is a Twin of two dispatchers
    for k, v in vars(m).items():
        if isinstance(v, Twin):
            yield k + "__serial", v.serial
            yield k, v.parallel
        elif isinstance(v, CPUDispatcher):
            yield k, v
mods = (_act, _blas, _block, _convpool, _direct, _head, _pool, _taps, _tiles, _wino, _wtrans, _xent, _zpool)
miss = {f"{m.__name__}.{k}": sum(v.stats.cache_misses.values()) for m in mods for k, v in dispatchers(m)
        if v.stats.cache_misses}
hits = sum(sum(v.stats.cache_hits.values()) for m in mods for _, v in dispatchers(m))
print(json.dumps({"misses": miss, "hits": hits}))
"""


NET_MISSES = SPY + r"""
import json, sys, numpy as np
from mpfpipe.arch import load_net
from mpfpipe.fragment import dense_forward, dense_loss_grad
from mpfpipe.kernels._par import variant
from mpfpipe.params import init_params
from mpfpipe.warmup import jobs_for, warmup
net = load_net(sys.argv[1])
sizes = json.loads(sys.argv[2])
p = init_params(net, 0, np.float32)
with variant("serial"):
    warmup(("float32",), jobs_for(net), ("serial",))
    event.register("numba:compile", Spy())
    for size in sizes:  # training: steps and line searches (the loss alone)
        img = np.random.default_rng(0).standard_normal((1, *size)).astype(np.float32)
        for grad in (True, False):
            dense_loss_grad(net, p, img, (img[0] > 0).astype(np.uint8), dtype=np.float32, grad=grad)
    training = sorted(set(compiled))
    warmup(("float32",), jobs_for(net, winograd=True), ("serial",))
    compiled.clear()
    for size in sizes:  # predictions: F(2, k) where the net has layers for it
        img = np.random.default_rng(0).standard_normal((1, *size)).astype(np.float32)
        dense_forward(net, p, img, dtype=np.float32)
print(json.dumps([training, sorted(set(compiled))]))
"""


def test_jobs_for_the_presets():
    """Longest jobs first, so that processes sharing them out finish closer together; only what the net calls
    (steel: no tap GEMMs; n3 / n4: no direct input gradient, every pool fused with its conv in inference)."""
    assert jobs_for(load_net("steel")) == ["tiles", "head", "convpool", "pool", "direct", "direct_dx", "act"]
    assert jobs_for(load_net("n4")) == ["tiles", "taps", "convpool", "pool", "direct", "post", "act"]
    # predictions add F(2, k) where a net has layers for it (n3, n4: their 48-map convs and fc1; steel: none)
    assert jobs_for(load_net("n4"), winograd=True) == [*jobs_for(load_net("n4")), "wino"]
    assert jobs_for(load_net("steel"), winograd=True) == jobs_for(load_net("steel"))
    assert jobs_for(load_net("n337")) == ["tiles", "taps", "pool", "poolfwd", "zpool", "act"]  # conv1: 3 z-slabs
    assert jobs_for(load_net("aniso")) == ["tiles", "head", "taps", "pool", "direct", "poolfwd", "zpool", "act"]


@pytest.mark.slow
@pytest.mark.parametrize("name,sizes", [("steel", [[128, 128], [60, 137]]), ("n4", [[64, 60]])])
def test_a_nets_own_jobs_cover_its_training_and_inference(tmp_path, name, sizes):
    """A training run warms only `jobs_for(net)` (a fresh cache): its steps and line searches must then compile
    nothing more, and predictions nothing more than `jobs_for(net, winograd=True)` adds."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "MPFPIPE_NO_REEXEC": "1"}
    run = subprocess.run([sys.executable, "-c", NET_MISSES, name, json.dumps(sizes)], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1]) == [[], []]


@pytest.mark.slow
def test_concurrent_warmups_share_the_compiling_and_cover_every_preset(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "MPFPIPE_NO_REEXEC": "1"}
    cmd = [sys.executable, "-m", "mpfpipe", "warmup"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    a, b = (set(o["compiled"]) for o in outs)
    # the engine's jobs for both variants, the instance step's (no parallel kernels) once
    every = {f"{j}-float32-{v}" for j in JOBS for v in ("serial", "parallel")} | {f"{j}-float32-serial"
                                                                                  for j in INSTANCE_JOBS}
    assert a | b == every and not a & b  # each group compiled once, by one of the two
    again = json.loads(subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout)
    assert again["compiled"] == [] and set(again["ready"]) == every
    run = subprocess.run([sys.executable, "-c", MISSES], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["misses"] == {} and result["hits"] >= 20
