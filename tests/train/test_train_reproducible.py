"""train(reproducible=True) end to end: three L-BFGS steps on real ISBI crops on a LocalCluster whose workers are
built as an AVX2 node would be (Numba kernels compiled for 'haswell', OpenBLAS's Haswell kernel) give the same
weights, bit for bit, as on workers built for this CPU; without the mode they may not (OpenBLAS's kernel)."""
import numpy as np

from mpfpipe import _reproducible
from mpfpipe.kernels import _blas
from mpfpipe.train import train


def _weights(isbi_crops, net, tmp_path, monkeypatch, cache, name, reproducible, **env):
    for var in ("NUMBA_CPU_NAME", "OPENBLAS_CORETYPE"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():  # the workers a LocalCluster spawns inherit this process's environment
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("NUMBA_CACHE_DIR", cache(env.get("NUMBA_CPU_NAME", "host")))
    monkeypatch.setenv(_reproducible.ENV, "0")
    lines = []
    try:
        r = train(isbi_crops, net, optimizer="lbfgs", epochs=3, seed=2, out=tmp_path / f"{name}.safetensors",
                  workers=2, threads=1, progress=False, reproducible=reproducible, echo=lines.append)
    finally:
        _blas.set_reproducible(False)  # train(reproducible=True) leaves this process in the mode
        for var in ("NUMBA_CPU_NAME", "OPENBLAS_CORETYPE"):
            monkeypatch.delenv(var, raising=False)
    assert len(r.records) == 3
    assert not any(line.startswith("cpus:") for line in lines)  # one kind of CPU in each pool
    return r.x


def test_lbfgs_weights_are_bit_identical_on_avx2_and_host_workers(isbi_crops, small_net, tmp_path, monkeypatch,
                                                                  isa_cache):
    def weights(name, reproducible, **env):
        return _weights(isbi_crops, small_net, tmp_path, monkeypatch, isa_cache, name, reproducible, **env)

    host = weights("host", True)
    avx2 = weights("avx2", True, NUMBA_CPU_NAME="haswell", OPENBLAS_CORETYPE="Haswell")
    assert np.array_equal(host, avx2)
    assert np.isfinite(host).all()
    if _reproducible.blas_cores() != ["Haswell"]:  # the control: the workers really ran another OpenBLAS kernel
        off_host = weights("off-host", False)
        off_avx2 = weights("off-avx2", False, NUMBA_CPU_NAME="haswell", OPENBLAS_CORETYPE="Haswell")
        assert not np.array_equal(off_host, off_avx2)
