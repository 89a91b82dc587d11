"""Compile the engine's kernels once per machine, not once per process.

Every kernel is an ``@njit(cache=True)`` function: the first process that calls it compiles it (all that a steel
training step needs: ~16 s of one core of the development VM for the serial builds, about twice that for the
parallel ones, see below) and writes Numba's on-disk cache; later
processes load it in well under a second. Without care, every worker process of a fresh install or a new
node compiles the same kernels at the same time. Here the kernels are grouped into *jobs* (a kernel family and
a dtype: direct convolution and its input gradient, tap GEMMs, register tiles, inference's conv + pool and its
plain pool, fused output layer, head, training's pooling, activations and loss), each compiled by calling the
public kernel wrappers on tiny arrays, and each guarded by its own lock file and done marker in the cache folder. A
process warms only the jobs its net calls (`jobs_for`: n3 / n4 need neither a direct input gradient nor a plain
inference pool):

- a process that finds a job's marker skips it (Numba loads the kernels from its cache when they are called);
- otherwise it takes the job's lock without waiting, compiles, writes the marker; a job whose lock another
  process holds is left for later, so N processes starting together share the jobs out (2 workers: about half
  the compile time each) and no job is ever compiled twice at the same time on one machine;
- a crashed holder's lock is released by the kernel (``flock``), so its job is taken over.

Each job is compiled for one *variant* of the parallel kernels (`kernels._par`): the serial twins, which a process
running one thread calls (the default cluster: one thread per worker, about 2.5 times less to compile), or the
``parallel=True`` twins. A process warms the variant it will run; ``mpfpipe warmup`` warms both, for images whose
workers may run any number of threads.

Markers are named after what Numba's cache depends on -- Numba's version, the CPU, each kernel source file's
modification time and size, and `_kernel_cache`'s hash of every Numba-using module -- so a new install, an upgrade
or another CPU compiles again instead of trusting a stale marker. `ensure_warm` runs before a process's first
kernel call; ``mpfpipe warmup`` does it ahead of time (deploy/'s Dockerfile runs it, so containers start with a
warm cache). Layers above the engine bring jobs of their own the same way (a ``registry`` of them): the instance
step's flooding and merging, `mpfpipe.data.warm`.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import time
from pathlib import Path

import numpy as np

DTYPES = ("float32", "float64")
_WARM = set()  # (net ops, dtype) this process has made sure of


def _conv_job(dt, cin, cout, act, size=12, need_dx=(True, False)):
    from .kernels import conv_backward, conv_forward
    x = np.ones((cin, 2, size, size), dt)
    w = np.full((cout, cin, 3, 3), 0.01, dt)
    y = conv_forward(x, w, np.zeros(cout, dt), act)
    for dx in need_dx:
        conv_backward(x, w, y, np.ones_like(y), act, dx)


def _job_direct(dt):
    # C_in * C_out <= DIRECT_MAX: the direct kernels of a first layer (no input gradient), every preset's case
    _conv_job(dt, 1, 4, "tanh", need_dx=(False,))


def _job_direct_dx(dt):
    from .kernels import conv_direct_dinput  # a direct conv past the first layer (the rest: `_job_direct`)
    conv_direct_dinput(np.ones((4, 2, 10, 10), dt), np.full((4, 1, 3, 3), 0.01, dt), np.zeros((1, 2, 12, 12), dt))


def _job_taps(dt):
    _conv_job(dt, 12, 12, "relu", size=5)  # wider, fragments shorter than a tile: one GEMM per tap


def _job_tiles(dt):
    _conv_job(dt, 12, 12, "relu")  # wider, fragments of a few tiles: the register tiles


def _job_convpool(dt):
    from .kernels import conv_pool_forward
    w = np.full((6, 1, 4, 4), 0.01, dt)
    for dense, size in ((True, 20), (False, 19)):  # inference's conv + pool on the tiles (pools exact for both)
        y = conv_pool_forward(np.ones((1, 1, size, size), dt), w, np.zeros(6, dt), "tanh", 2, dense)
        assert y is not None, "the warm-up's conv + pool must run on the tiles"


def _job_post(dt):
    from .kernels import conv_backward_post, conv_forward_post
    for size in (5, 12):  # the tap GEMMs and the register tiles
        x = np.ones((12, 2, size, size), dt)
        w, wp = np.full((16, 12, 3, 3), 0.01, dt), np.full((2, 16, 1, 1), 0.1, dt)
        y, z = conv_forward_post(x, w, np.zeros(16, dt), "tanh", wp, np.zeros(2, dt))
        for need_dx in (True, False):
            conv_backward_post(x, w, y, np.ones_like(z), "tanh", need_dx, wp)


def _job_wino(dt):
    from .kernels import conv_forward_post, conv_pool_forward
    w = np.full((16, 16, 4, 4), 0.01, dt)  # predictions' F(2, k) layers (`plan.winograd_layers`)
    for dense, size in ((True, 20), (False, 21)):
        y = conv_pool_forward(np.ones((16, 1, size, size), dt), w, np.zeros(16, dt), "tanh", 2, dense, True)
        assert y is not None, "the warm-up's conv + pool must run on the tiles"
    conv_forward_post(np.ones((16, 2, 12, 12), dt), w, np.zeros(16, dt), "tanh", np.full((2, 16, 1, 1), 0.1, dt),
                      np.zeros(2, dt), keep=False, winograd=True)


def _job_head(dt):
    from .kernels import backward_head, forward_head
    x = np.ones((4, 2, 8, 8), dt)
    layers = [(np.full((6, 4, 1, 1), 0.1, dt), np.zeros(6, dt), "tanh"),
              (np.full((2, 6, 1, 1), 0.1, dt), np.zeros(2, dt), "linear")]
    out = forward_head(x, layers)
    for need_dx in (True, False):
        backward_head(x, layers, np.ones_like(out), need_dx)


def _job_pool(dt):
    from .kernels import pool_backward, pool_forward
    for dense, h in ((True, 9), (False, 8)):
        x = np.arange(2 * 1 * h * h, dtype=dt).reshape(2, 1, h, h)
        y, idx = pool_forward(x, 2, dense)
        pool_backward(np.ones_like(y), idx, 2, dense, x.shape)


def _job_poolfwd(dt):
    from .kernels import pool_forward
    for dense, h in ((True, 9), (False, 8)):  # inference's pool where no conv + pool fuses it
        pool_forward(np.arange(2 * 1 * h * h, dtype=dt).reshape(2, 1, h, h), 2, dense, need_idx=False)


def _job_zpool(dt):
    from .kernels import zpool_backward, zpool_forward
    for dense, d in ((True, 5), (False, 4)):
        x = np.arange(2 * d * 2 * 3 * 3, dtype=dt).reshape(2, d, 2, 3, 3)
        y, idx = zpool_forward(x, 2, dense)
        zpool_backward(np.ones_like(y), idx, 2, dense, x.shape)
        zpool_forward(x, 2, dense, need_idx=False)


def _job_act(dt):
    from .kernels import act_backward, bias_act_forward
    from .loss import xent
    for act in ("linear", "tanh", "stanh", "relu"):
        y = np.ones((2, 16), dt)
        bias_act_forward(y, np.zeros(2, dt), act)
        act_backward(np.ones_like(y), y, act)
    for lab_dtype in (np.uint8, np.int64):
        for grad in (True, False):
            xent(np.zeros((2, 4, 4), dt), np.zeros((4, 4), lab_dtype), grad=grad)


# Longest first (serial builds, two processes sharing a fresh cache on the 2-core development VM: tiles 4.1 s,
# head 3.6, taps 2.9, convpool 2.4, pool 1.6, direct 1.6, direct_dx 1.0, post 0.8, act 0.7): processes that share
# the jobs out then finish closer together.
JOBS = {"tiles": _job_tiles, "head": _job_head, "taps": _job_taps, "convpool": _job_convpool, "pool": _job_pool,
        "direct": _job_direct, "direct_dx": _job_direct_dx, "post": _job_post, "poolfwd": _job_poolfwd,
        "zpool": _job_zpool, "act": _job_act, "wino": _job_wino}


def jobs_for(net, winograd: bool = False) -> list[str]:
    """The jobs whose kernels ``net``'s forward and backward passes call (`plan.kernel_families`; steel: no tap
    GEMMs or fused pair). Training needs the inference kernels too: line searches and validation evaluate the loss
    without a backward pass. With ``winograd`` (predictions: `network.forward`), also F(2, k)'s kernels where the
    net has layers for them (`plan.winograd_layers`); training never runs them, so it never compiles them."""
    from .plan import kernel_families, winograd_layers
    need = kernel_families(net)
    if winograd and winograd_layers(net):
        need.add("wino")
    return [j for j in JOBS if j in need]


def cache_root() -> Path:
    """Where the locks and markers live: Numba's cache folder when NUMBA_CACHE_DIR sets one, else beside the
    kernels' own cache (``mpfpipe/kernels/__pycache__``) when writable, else ~/.cache/mpfpipe."""
    import numba
    if numba.config.CACHE_DIR:
        root = Path(numba.config.CACHE_DIR)
    else:
        root = Path(__file__).parent / "kernels" / "__pycache__"
        try:
            root.mkdir(parents=True, exist_ok=True)
            if not os.access(root, os.W_OK):
                raise PermissionError
        except OSError:
            root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mpfpipe"
    root = root / "mpfpipe-warmup"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _stamp() -> str:
    """What Numba's cache validity depends on: its version, the CPU, every kernel source's mtime and size."""
    import llvmlite.binding as llvm
    import numba
    parts = [numba.__version__, llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()]
    here = Path(__file__).parent
    for src in sorted([*(here / "kernels").glob("*.py"), here / "loss.py"]):
        st = src.stat()
        parts.append(f"{src.name}:{st.st_mtime_ns}:{st.st_size}")
    # every cache entry is stale once any Numba-using module changes (`_kernel_cache`), the instance step's too
    from ._kernel_cache import sources_hash
    parts.append(sources_hash())
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _marker(root: Path, stamp: str, job: str, dtype: str, variant: str) -> Path:
    return root / f"{job}-{dtype}-{variant}-{stamp}.done"


def warmup(dtypes=("float32",), jobs=None, variants=None, registry=None) -> dict:
    """Make sure every kernel job of ``dtypes`` is compiled into the cache for ``variants`` ("serial",
    "parallel"; default: the one this process runs), sharing the work with any other process doing the same.
    ``registry``: {job name: function of a dtype} to take the jobs from (default `JOBS`, the engine's).
    Returns {"compiled": [jobs this process compiled], "ready": [jobs found compiled, by an earlier or a
    concurrent process], "seconds": s, "cache": folder}; a job is named job-dtype-variant."""
    from ._runtime import apply_thread_limit
    from .kernels import single_threaded_blas
    from .kernels import VARIANTS, current_variant, variant

    for d in dtypes:
        if d not in DTYPES:
            raise ValueError(f"warmup dtype {d!r}: choose from {', '.join(DTYPES)}")
    t0 = time.perf_counter()
    apply_thread_limit()
    variants = tuple(variants or (current_variant(),))
    for v in variants:
        if v not in VARIANTS:
            raise ValueError(f"warmup variant {v!r}: choose from {', '.join(VARIANTS)}")
    root, stamp = cache_root(), _stamp()
    registry = JOBS if registry is None else registry
    pending = [(j, d, v) for v in variants for d in dtypes for j in (jobs or registry)]
    done = {"compiled": [], "ready": []}
    while pending:
        for job, d, v in list(pending):
            marker, name = _marker(root, stamp, job, d, v), f"{job}-{d}-{v}"
            if marker.exists():
                done["ready"].append(name)
                pending.remove((job, d, v))
                continue
            with open(root / f"{name}.lock", "a+") as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # another process compiles it: do the next job meanwhile
                try:
                    if not marker.exists():
                        with single_threaded_blas(), variant(v):
                            registry[job](np.dtype(d))
                        tmp = marker.with_suffix(f".{os.getpid()}.tmp")
                        tmp.write_text(f"pid {os.getpid()}\n")
                        os.replace(tmp, marker)
                        done["compiled"].append(name)
                        pending.remove((job, d, v))
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)
        if pending:  # the rest are being compiled elsewhere: wait for the first of them, then look again
            job, d, v = pending[0]
            with open(root / f"{job}-{d}-{v}.lock", "a+") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                fcntl.flock(fh, fcntl.LOCK_UN)
    done["seconds"] = time.perf_counter() - t0
    done["cache"] = str(root)
    return done


def ensure_warm(net, dtype, winograd: bool = False) -> None:
    """Before this process's first kernel call for ``net`` in ``dtype``: `warmup` the jobs it needs (`jobs_for`)
    unless their markers say they are done (cheap after the first call: a set lookup)."""
    from .kernels import current_variant
    d, v = np.dtype(dtype).name, current_variant()
    key = (tuple(op for op in net.ops), d, v, winograd)
    if key in _WARM or d not in DTYPES:
        return
    try:
        root, stamp = cache_root(), _stamp()
        jobs = jobs_for(net, winograd)
        if not all(_marker(root, stamp, j, d, v).exists() for j in jobs):
            warmup((d,), jobs, (v,))
    except OSError:
        pass  # no writable cache folder: the kernels compile on first use, as without this module
    _WARM.add(key)


def _warm_task(jobs, dtype, registry=None, variants=None):
    from ._runtime import apply_thread_limit
    apply_thread_limit()
    try:
        return warmup((np.dtype(dtype).name,), jobs, variants, registry)
    except OSError:  # no writable cache folder (a read-only image): the kernels compile on first use instead
        return {"compiled": [], "ready": [], "seconds": 0.0, "cache": None}


def warm_workers(client, net, dtype) -> dict:
    """Run `warmup` for ``net``'s jobs on every worker of ``client`` at once (they share the compiling out);
    returns {"workers": n, "compiled": [jobs compiled anywhere], "seconds": wall seconds}."""
    return warm_on(client, jobs_for(net), dtype)


def warm_on(client, jobs, dtype, registry=None, variants=None) -> dict:
    """`warm_workers` of any ``jobs`` (of ``registry``, default `JOBS`; ``variants`` as `warmup`'s); in this
    process when ``client`` is None."""
    t0 = time.perf_counter()
    if client is None:
        res = _warm_task(jobs, dtype, registry, variants)
        return {"workers": 0, "compiled": res["compiled"], "seconds": time.perf_counter() - t0}
    addrs = sorted(client.scheduler_info(n_workers=-1)["workers"])
    futs = [client.submit(_warm_task, jobs, dtype, registry, variants, workers=[a], allow_other_workers=False,
                          pure=False, key=f"mpf-warmup-{os.getpid()}-{time.time_ns()}-{k}")
            for k, a in enumerate(addrs)]
    results = client.gather(futs)
    return {"workers": len(addrs), "compiled": sorted({j for r in results for j in r["compiled"]}),
            "seconds": time.perf_counter() - t0}
