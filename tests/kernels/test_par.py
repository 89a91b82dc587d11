"""The parallel kernels' twins (kernels._par): the serial build, which one-thread workers run, gives bit for bit
what the parallel build gives on several threads, for the full-size presets' whole training step and inference,
so which twin a worker runs never changes a result."""
import numpy as np
import numba
import pytest

from mpfpipe.arch import load_net
from mpfpipe.fragment import dense_forward, dense_loss_grad
from mpfpipe.kernels import _par
from mpfpipe.params import init_params


def _step(net, dtype, mode, threads):
    numba.set_num_threads(threads)
    rng = np.random.default_rng(3)
    img = rng.standard_normal((net.in_channels, 23, 29)).astype(np.float32)
    lab = (rng.random((23, 29)) > 0.6).astype(np.uint8)
    p = init_params(net, 1, np.float64)
    with _par.variant(mode):
        r = dense_loss_grad(net, p, img, lab, dtype=dtype)
        out = dense_forward(net, p, img, dtype=dtype)
    return r, out


@pytest.mark.parametrize("name", ["steel", "n3", "n4"])
def test_serial_twin_equals_parallel_build_bit_for_bit(name):
    net = load_net(name)
    threads = min(2, numba.config.NUMBA_NUM_THREADS)
    old = numba.get_num_threads()
    try:
        rs, outs = _step(net, np.float32, "serial", 1)
        rp, outp = _step(net, np.float32, "parallel", threads)
    finally:
        numba.set_num_threads(old)
    assert rs.loss == rp.loss
    assert np.array_equal(outs, outp)
    assert set(rs.grad) == set(rp.grad)
    for k in rs.grad:
        assert np.array_equal(rs.grad[k], rp.grad[k]), k
    assert np.abs(outs).sum() > 0 and all(np.abs(g).sum() > 0 for g in rs.grad.values())


def test_the_variant_follows_the_thread_count_unless_forced():
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        assert _par.current_variant() == "serial"
        with _par.variant("parallel"):
            assert _par.current_variant() == "parallel"
        assert _par.current_variant() == "serial"
        if numba.config.NUMBA_NUM_THREADS > 1:
            numba.set_num_threads(2)
            assert _par.current_variant() == "parallel"
    finally:
        numba.set_num_threads(old)
    with pytest.raises(ValueError, match="kernel variant 'both'"):
        with _par.variant("both"):
            pass


def test_twins_are_cached_under_their_own_names():
    from mpfpipe.kernels._direct import conv_direct_forward
    s, p = conv_direct_forward.serial, conv_direct_forward.parallel
    assert s.py_func.__qualname__ == "conv_direct_forward__serial"
    assert p.py_func.__qualname__ == "conv_direct_forward"
    assert s.targetoptions.get("parallel") in (None, False) and p.targetoptions["parallel"] is True
