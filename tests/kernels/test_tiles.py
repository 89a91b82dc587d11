"""The register-tiled convolution (kernels._tiles): forward and both backward passes against the naive reference in
float64, at shapes that exercise every edge (channel counts that are not multiples of the tile, tiles moved back at a
block's end, many blocks, weight-gradient tails shorter than a vector), the fused output layer, the full-size presets
through the whole net, and bit-identity across thread counts and instruction sets."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numba
import numpy as np
import pytest

import naive
import mpfpipe.kernels._conv as conv
import mpfpipe.kernels._tiles as tiles
from mpfpipe.arch import load_net
from mpfpipe.fragment import dense_forward, dense_loss_grad
from mpfpipe.kernels import _par, conv_backward, conv_backward_post, conv_forward, conv_forward_post
from mpfpipe.params import init_params

REPO = Path(__file__).resolve().parents[2]


def _naive_layer(x, w, b, act, dy):
    """Forward output and (dw, db, dx) of one conv layer over every fragment, with tests/naive.py's conv."""
    k = w.shape[2]
    y = np.stack([naive.act(naive.conv(x[:, f], w, b), act) for f in range(x.shape[1])], axis=1)
    dw, db, dx = np.zeros_like(w), np.zeros_like(b), np.zeros_like(x)
    for f in range(x.shape[1]):
        z = naive.conv(x[:, f], w, b)
        dz = dy[:, f] * naive.act_grad(z, act)
        db += dz.sum(axis=(1, 2))
        for ky in range(k):
            for kx in range(k):
                win = x[:, f, ky:ky + z.shape[1], kx:kx + z.shape[2]]
                dw[:, :, ky, kx] += np.einsum("ohw,chw->oc", dz, win)
                dx[:, f, ky:ky + z.shape[1], kx:kx + z.shape[2]] += np.einsum("oc,ohw->chw", w[:, :, ky, kx], dz)
    return y, dw, db, dx


@pytest.mark.parametrize("cin,cout,k,F,h,w,act", [
    (12, 14, 3, 3, 20, 17, "tanh"),   # channels not a multiple of the tiles (6 / 4 x 6): tiles moved back
    (11, 13, 4, 2, 30, 25, "relu"),
    (6, 6, 1, 2, 9, 7, "stanh"),      # the smallest tiled layer, k = 1 (no dropped columns)
    (48, 48, 5, 2, 27, 33, "tanh"),   # n4's layer width
    (7, 200, 3, 5, 12, 11, "relu"),   # fc1-like: 200 maps, short fragments
    (8, 200, 3, 3, 13, 18, "tanh"),   # 16 = 2 vectors per row (float64): row-pair tiles, an odd last row
    (9, 12, 3, 2, 12, 34, "relu"),    # 32 positions per row (n4's fc1 at 512 x 512): row-pair tiles
])
@pytest.mark.parametrize("small_blocks", [False, True])
def test_tiled_layer_matches_naive(cin, cout, k, F, h, w, act, small_blocks, monkeypatch):
    if small_blocks:  # many blocks per fragment and per signal; the weight gradient's blocks end off a vector
        monkeypatch.setattr(tiles, "BLOCK_COLS", 40)  # read by the Python wrappers, not the kernels
    rng = np.random.default_rng(cin * 100 + k)
    x = rng.standard_normal((cin, F, h, w))
    wt = rng.standard_normal((cout, cin, k, k)) * 0.3
    b = rng.standard_normal(cout)
    assert conv._tiled(x, wt), "the case must run on the tiles"
    y = conv_forward(x, wt, b, act)
    dy = rng.standard_normal(y.shape)
    y_ref, dw_ref, db_ref, dx_ref = _naive_layer(x, wt, b, act, dy)
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-12)
    for need_dx in (True, False):
        dw, db, dx = conv_backward(x, wt, y, dy.copy(), act, need_dx)
        np.testing.assert_allclose(dw, dw_ref, rtol=0, atol=1e-10)
        np.testing.assert_allclose(db, db_ref, rtol=0, atol=1e-10)
        if need_dx:
            np.testing.assert_allclose(dx, dx_ref, rtol=0, atol=1e-11)
        else:
            assert dx is None


def test_small_fragments_and_few_channels_stay_off_the_tiles():
    assert not conv._tiled(np.zeros((48, 9, 3, 3)), np.zeros((200, 48, 3, 3)))  # patch mode's fc1: 1 position
    assert not conv._tiled(np.zeros((5, 2, 40, 40)), np.zeros((48, 5, 3, 3)))   # fewer than 6 input channels
    assert not conv._tiled(np.zeros((8, 256, 5, 5)), np.zeros((8, 8, 5, 5)))    # steel, patch mode: direct
    assert conv._tiled(np.zeros((8, 2, 40, 40)), np.zeros((8, 8, 5, 5)))        # steel, dense: 8 -> 8 on tiles
    # forward passes: any number of input maps (first layers), the same fragment rule
    assert conv._tiled_forward(np.zeros((5, 2, 40, 40)), np.zeros((48, 5, 3, 3)))
    assert conv._tiled_forward(np.zeros((1, 1, 73, 69)), np.zeros((8, 1, 7, 7)))  # steel's first layer, dense
    assert not conv._tiled_forward(np.zeros((1, 256, 7, 7)), np.zeros((8, 1, 7, 7)))  # patch mode: 1 position
    assert not conv._tiled_forward(np.zeros((1, 1, 40, 40)), np.zeros((4, 1, 3, 3)))  # fewer than 6 output maps


@pytest.mark.parametrize("cin,cout,k,F,h,w", [(1, 48, 3, 1, 40, 37), (1, 8, 7, 2, 30, 26), (3, 13, 4, 3, 21, 19)])
def test_first_layer_forward_on_the_tiles_matches_naive(cin, cout, k, F, h, w):
    """Few input maps: the forward pass on the tiles (output channels moved back where 6 does not divide them), the
    backward passes on the direct kernels, all against tests/naive.py in float64."""
    rng = np.random.default_rng(cin * 10 + k)
    x = rng.standard_normal((cin, F, h, w))
    wt = rng.standard_normal((cout, cin, k, k)) * 0.3
    b = rng.standard_normal(cout)
    assert conv._tiled_forward(x, wt) and not conv._tiled(x, wt)
    y = conv_forward(x, wt, b, "tanh")
    dy = rng.standard_normal(y.shape)
    y_ref, dw_ref, db_ref, dx_ref = _naive_layer(x, wt, b, "tanh", dy)
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-12)
    dw, db, dx = conv_backward(x, wt, y, dy, "tanh", True)
    np.testing.assert_allclose(dw, dw_ref, rtol=0, atol=1e-10)
    np.testing.assert_allclose(db, db_ref, rtol=0, atol=1e-10)
    np.testing.assert_allclose(dx, dx_ref, rtol=0, atol=1e-11)


def test_row_pair_tiles_give_the_flat_tiles_bits():
    """float32, rows of 32 positions (row-pair tiles) against the same rows inside 33-position rows (flat tiles):
    the same sums in the same order, so the same bits, with and without the fused output layer."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((12, 3, 15, 35)).astype(np.float32)
    w, b = (rng.standard_normal((20, 12, 3, 3)) * 0.3).astype(np.float32), rng.standard_normal(20).astype(np.float32)
    wp, bp = rng.standard_normal((2, 20, 1, 1)).astype(np.float32), rng.standard_normal(2).astype(np.float32)
    narrow = np.ascontiguousarray(x[..., :34])
    assert conv_forward(narrow, w, b, "tanh").shape[3] == 32 and conv._tiled(narrow, w)
    np.testing.assert_array_equal(conv_forward(narrow, w, b, "tanh"), conv_forward(x, w, b, "tanh")[..., :32])
    _, z_flat = conv_forward_post(x, w, b, "tanh", wp, bp, keep=False)
    _, z_pair = conv_forward_post(narrow, w, b, "tanh", wp, bp, keep=False)
    np.testing.assert_array_equal(z_pair, z_flat[..., :32])


@pytest.mark.parametrize("cout", [100, 98, 97, 101, 12])  # last block of 4, 2, 1, 5 maps, and none
def test_remainder_tiles_give_the_whole_tiles_bits(cout, monkeypatch):
    """float32: the one-vector tail tiles and the 4-map tile compute each output as the same sum in the same order
    as the whole tiles. Maps: the last 6 maps of a layer against the same maps computed alone as a 6-map layer
    (whole tiles only). Positions: blocks of 2, 3 and 8 rows (tails of 2 vectors, 1 vector and a whole tile moved
    back, 64 positions a tile) against whole fragments (985 positions: a tail of 2 vectors), whose tails fall
    elsewhere."""
    rng = np.random.default_rng(cout)
    x = rng.standard_normal((9, 4, 23, 47)).astype(np.float32)  # 45 x 21 outputs: n = 21*47 - 2 = 985 = 15*64 + 25
    w = (rng.standard_normal((cout, 9, 3, 3)) * 0.3).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    y = conv_forward(x, w, b, "tanh")
    last6 = conv_forward(x, np.ascontiguousarray(w[-6:]), b[-6:], "tanh")
    np.testing.assert_array_equal(y[-6:], last6)
    for cols in (2 * 47, 3 * 47, 8 * 47):  # blocks of 2, 3 and 8 rows: 92, 139 and 374 positions
        monkeypatch.setattr(tiles, "BLOCK_COLS", cols)
        np.testing.assert_array_equal(conv_forward(x, w, b, "tanh"), y)
    ref = np.stack([naive.act(naive.conv(x[:, f].astype(np.float64), w.astype(np.float64), b.astype(np.float64)),
                              "tanh") for f in range(4)], axis=1)
    np.testing.assert_allclose(y, ref, rtol=0, atol=2e-5)


@pytest.mark.parametrize("act", ["tanh", "relu"])
@pytest.mark.parametrize("need_dx", [True, False])
@pytest.mark.parametrize("w_in", [12, 18])  # 18: 16 positions per row (float64: 2 vectors), row-pair tiles
def test_tiled_fused_output_layer_equals_naive_two_layers(act, need_dx, w_in):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((9, 6, 10, w_in))
    w, b = rng.standard_normal((20, 9, 3, 3)) * 0.3, rng.standard_normal(20)
    wp, bp = rng.standard_normal((3, 20, 1, 1)), rng.standard_normal(3)
    assert conv._tiled(x, w)
    y, z = conv_forward_post(x, w, b, act, wp, bp)
    dz = rng.standard_normal(z.shape)
    y_ref = np.stack([naive.act(naive.conv(x[:, f], w, b), act) for f in range(6)], axis=1)
    z_ref = np.stack([naive.conv(y_ref[:, f], wp, bp) for f in range(6)], axis=1)
    np.testing.assert_allclose(y, y_ref, atol=1e-12)
    np.testing.assert_allclose(z, z_ref, atol=1e-12)
    y_none, z_only = conv_forward_post(x, w, b, act, wp, bp, keep=False)  # inference: fc1's output never written
    assert y_none is None and np.array_equal(z_only, z)
    dwp_ref = np.einsum("qfyx,ofyx->qo", dz, y_ref).reshape(wp.shape)
    dy = np.einsum("qo,qfyx->ofyx", wp[:, :, 0, 0], dz)
    _, dw_ref, db_ref, dx_ref = _naive_layer(x, w, b, act, dy)
    dw, db, dx, dwp, dbp = conv_backward_post(x, w, y, dz, act, need_dx, wp)
    np.testing.assert_allclose(dwp, dwp_ref, atol=1e-10)
    np.testing.assert_allclose(dbp, dz.sum(axis=(1, 2, 3)), atol=1e-10)
    np.testing.assert_allclose(dw, dw_ref, atol=1e-10)
    np.testing.assert_allclose(db, db_ref, atol=1e-10)
    if need_dx:
        np.testing.assert_allclose(dx, dx_ref, atol=1e-11)


def _net_run(net, size, dtype, seed=3):
    rng = np.random.default_rng(seed)
    img = rng.standard_normal((net.in_channels, *size))
    lab = (rng.random(size) > 0.6).astype(np.uint8)
    p = init_params(net, 1, np.float64)
    return dense_loss_grad(net, p, img, lab, dtype=dtype), dense_forward(net, p, img, dtype=dtype)


@pytest.mark.parametrize("name,size", [("n3", (130, 121)), ("n4", (150, 139))])
def test_full_size_presets_on_the_tiles_equal_the_tap_path(name, size, monkeypatch):
    """The full-size n3 / n4, every many-channel layer (fc1 included: these sizes give its fragments more than one
    tile) on the tiles, in float64, against the same net on the tap GEMMs (tests/test_kernels.py checks those
    against the naive net)."""
    net = load_net(name)
    seen = []
    for rule in ("_tiled", "_tiled_forward"):
        real = getattr(conv, rule)
        monkeypatch.setattr(conv, rule, lambda x, w, real=real: seen.append(real(x, w)) or seen[-1])
    r_tiles, out_tiles = _net_run(net, size, np.float64)
    assert sum(seen) >= 6, "conv layers, fc1 included, forward and backward, must run on the tiles"
    monkeypatch.setattr(conv, "_tiled", lambda x, w: False)
    monkeypatch.setattr(conv, "_tiled_forward", lambda x, w: False)
    r_taps, out_taps = _net_run(net, size, np.float64)
    np.testing.assert_allclose(out_tiles, out_taps, rtol=0, atol=1e-12)
    assert r_tiles.loss == pytest.approx(r_taps.loss, rel=1e-13)
    for key in r_taps.grad:
        scale = np.abs(r_taps.grad[key]).max()
        np.testing.assert_allclose(r_tiles.grad[key], r_taps.grad[key], rtol=0, atol=1e-11 * scale, err_msg=key)


@pytest.mark.parametrize("name", ["n3", "n4"])
def test_tiles_are_bit_identical_serial_and_parallel(name):
    net = load_net(name)
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        with _par.variant("serial"):
            rs, outs = _net_run(net, (100, 90), np.float32)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        with _par.variant("parallel"):
            rp, outp = _net_run(net, (100, 90), np.float32)
    finally:
        numba.set_num_threads(old)
    assert np.array_equal(outs, outp) and rs.loss == rp.loss
    for key in rs.grad:
        assert np.array_equal(rs.grad[key], rp.grad[key]), key


_ISA_SCRIPT = textwrap.dedent("""
    import sys, numpy as np
    from mpfpipe.kernels import _tiles
    from mpfpipe.kernels._wino import conv_forward_wino
    rng = np.random.default_rng(5)
    out = []
    for dt in (np.float32, np.float64):
        x = rng.standard_normal((13, 3, 21, 19)).astype(dt)
        w = (rng.standard_normal((14, 13, 3, 3)) * 0.3).astype(dt)
        y = np.empty((14, 3, 19, 17), dt)
        z = np.zeros((1, 1, 1, 1), dt)
        rows = _tiles.rows_per_block(19, 3, dt)
        _tiles.conv_fwd_tiles(x, _tiles.pack_forward(w, dt), np.zeros(14, dt), 0, False, rows, y, 1, False,
                              np.zeros((1, 1), dt), np.zeros(1, dt), z, True, None)
        lead, Ls = _tiles.grad_layout(3, 21, 19, 3, dt)
        gp = _tiles.aligned_empty((14, Ls), dt)
        _tiles.widen_pad(y, 21, 19, lead, gp)
        dw = np.zeros((2, 9, 14, 13))
        _tiles.conv_dw_tiles(x, gp, 3, lead, 100, dw)
        dx = np.empty_like(x)
        _tiles.conv_dx_tiles(gp, _tiles.pack_dinput(w, dt), 3, lead, 100, dx)
        out += [y, dw, dx]
        for k in (3, 4):  # predictions' F(2, k): its transforms too (k = 4: the points 1/2 and -2)
            out.append(conv_forward_wino(x, (rng.standard_normal((14, 13, k, k)) * 0.3).astype(dt)))
    np.savez(sys.argv[1], *out)
""")


def test_tiles_give_the_same_bits_on_avx2_and_on_this_cpu(tmp_path, isa_cache):
    """Each multiply-add is an explicit fused operation on a fixed-width vector, so code compiled for another
    instruction set (AVX2, 'haswell') computes the same bits as code compiled for this CPU (AVX-512 here, if it
    has it). Each build compiles into its own cache folder."""
    script = tmp_path / "isa.py"
    script.write_text(_ISA_SCRIPT)
    results = {}
    for name, cpu in (("host", None), ("haswell", "haswell")):
        env = dict(os.environ, PYTHONPATH=str(REPO), NUMBA_CACHE_DIR=isa_cache(name),
                   NUMBA_NUM_THREADS="1")
        env.pop("NUMBA_CPU_NAME", None)
        if cpu:
            env["NUMBA_CPU_NAME"] = cpu
        subprocess.run([sys.executable, str(script), str(tmp_path / f"{name}.npz")], env=env, check=True,
                       timeout=600)
        results[name] = np.load(tmp_path / f"{name}.npz")
    host, avx2 = results["host"], results["haswell"]
    assert len(host.files) == 10
    for key in host.files:
        assert np.array_equal(host[key], avx2[key]), key
        assert np.abs(host[key]).sum() > 0


def test_full_size_steel_on_the_tiles_equals_the_naive_patch_net(monkeypatch):
    """The steel net at full size on a 40x36 image: its 8 -> 8 layers run on the tiles (6-channel tiles moved back
    over 8 maps), and its first layer's forward pass; outputs at every pixel and the summed patch gradients,
    float64, against tests/naive.py."""
    from mpfpipe.warmup import ensure_warm
    net = load_net("steel")
    ensure_warm(net, np.float64)  # a stale kernel cache is rebuilt by running jobs: their layers are not counted
    seen = {"_tiled": [], "_tiled_forward": []}
    for rule in seen:
        real = getattr(conv, rule)
        monkeypatch.setattr(conv, rule,
                            lambda x, w, real=real, rule=rule: seen[rule].append(real(x, w)) or seen[rule][-1])
    naive.assert_dense_equals_patch_net(net, size=(40, 36), seed=11)
    assert seen["_tiled_forward"] == [True] * 6, "the three conv layers' forward passes (two runs) on the tiles"
    assert seen["_tiled"] == [True, True, False], "backward: both 8 -> 8 layers on the tiles, the first layer direct"
