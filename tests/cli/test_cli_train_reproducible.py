"""`mpfpipe train --reproducible` end to end, as a user runs it (a real subprocess, the embedded cluster): the model
trained by workers built as an AVX2 node would be (Numba for 'haswell', OpenBLAS's Haswell kernel) is the same
file content, tensor for tensor, as the one trained by workers built for this CPU."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

REPO = Path(__file__).resolve().parents[2]


def _train(tmp_path, cache, ds, name, **env_extra):
    env = dict(os.environ, PYTHONPATH=str(REPO), NUMBA_CACHE_DIR=cache(name))
    for var in ("NUMBA_CPU_NAME", "OPENBLAS_CORETYPE", "MPFPIPE_REPRODUCIBLE"):
        env.pop(var, None)
    env.update(env_extra)
    out = tmp_path / f"{name}.safetensors"
    r = subprocess.run([sys.executable, "-m", "mpfpipe", "train", str(ds), "--net", "steel", "--maps", "4",
                        "--hidden", "8", "--optimizer", "lbfgs", "--epochs", "2", "--workers", "1", "--threads", "1",
                        "--reproducible", "--no-progress", "--out", str(out)],
                       env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return load_file(out)


def test_train_reproducible_gives_the_same_model_on_avx2_and_host_workers(tmp_path, isa_cache):
    from mpfpipe.data import synth_em
    ds = synth_em(tmp_path / "em.zarr", n_images=3, size=(40, 44), split=(0.67, 0.33))
    host = _train(tmp_path, isa_cache, ds, "host")
    avx2 = _train(tmp_path, isa_cache, ds, "haswell", NUMBA_CPU_NAME="haswell", OPENBLAS_CORETYPE="Haswell")
    assert sorted(host) == sorted(avx2) and len(host) >= 10
    for key in host:
        assert np.array_equal(host[key], avx2[key]), key
