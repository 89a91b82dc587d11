"""Kernel-level properties: stitch/unstitch, MPF accumulation, fragment layout, tie rule, conv vs naive."""
import numpy as np
import pytest

import naive
from mpfpipe.kernels import conv_backward, conv_forward, pool_backward, pool_forward
from mpfpipe.kernels._stitch import stitch, unstitch


@pytest.mark.parametrize("pools", [(2,), (3, 2), (2, 2, 2, 2), ()])
def test_stitch_unstitch_are_inverse(pools):
    S = int(np.prod(pools)) if pools else 1
    rng = np.random.default_rng(0)
    frag = rng.standard_normal((3, S * S, 4, 5))
    dense = stitch(frag, pools)
    assert dense.shape == (3, 4 * S, 5 * S)
    assert np.array_equal(unstitch(dense, pools), frag)
    d2 = rng.standard_normal(dense.shape)
    assert np.array_equal(stitch(unstitch(d2, pools), pools), d2)


def test_stitch_places_fragments_by_the_design_formula():
    # two pools p1=3, p2=2: dense row y = a1 + 3 a2 + 6 i
    pools = (3, 2)
    frag = np.zeros((1, 36, 2, 2))
    for a1 in range(3):
        for b1 in range(3):
            for a2 in range(2):
                for b2 in range(2):
                    f = (a1 * 3 + b1) * 4 + a2 * 2 + b2
                    for i in range(2):
                        for j in range(2):
                            frag[0, f, i, j] = 1000 * (a1 + 3 * a2 + 6 * i) + (b1 + 3 * b2 + 6 * j)
    dense = stitch(frag, pools)[0]
    ys, xs = np.mgrid[0:12, 0:12]
    assert np.array_equal(dense, 1000 * ys + xs)


def test_mpf_forward_offsets_and_first_max_tie_rule():
    x = np.arange(5 * 5, dtype=np.float64).reshape(1, 1, 5, 5)
    y, idx = pool_forward(x, 2, dense=True)
    assert y.shape == (1, 4, 2, 2)
    # offset (a, b) = (1, 0) is fragment 2: windows start at rows 1, 3 and columns 0, 2
    assert np.array_equal(y[0, 2], [[x[0, 0, 2, 1], x[0, 0, 2, 3]], [x[0, 0, 4, 1], x[0, 0, 4, 3]]])
    ties = np.ones((1, 1, 2, 2))
    _, tidx = pool_forward(ties, 2, dense=False)
    assert tidx[0, 0, 0, 0] == 0  # first maximum in row-major order


def test_mpf_backward_accumulates_into_shared_maxima():
    # one big value at the centre of a 3x3 input is the max of all four 2x2 offsets' windows
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 5.0
    y, idx = pool_forward(x, 2, dense=True)
    assert np.all(y == 5.0)
    dy = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 4, 1, 1)
    dx = pool_backward(dy, idx, 2, True, x.shape)
    expected = np.zeros((3, 3))
    expected[1, 1] = 10.0
    assert np.array_equal(dx[0, 0], expected)


@pytest.mark.parametrize("p,dense", [(2, True), (3, True), (2, False)])  # p = 2 dense: the row-pass kernel
def test_pool_backward_equals_a_plain_scatter_of_the_window_maxima(p, dense):
    """Every window's gradient goes to its first maximum, offsets added in (a, b) order, as plain numpy loops
    compute it: exact, with ties (a coarse value grid) and a maximum shared by several offsets."""
    rng = np.random.default_rng(p)
    noff = p if dense else 1
    h = 5 * p + noff - 1
    x = np.round(rng.standard_normal((2, 3, h, h + p)) * 2) / 2
    y, idx = pool_forward(x, p, dense)
    dy = rng.standard_normal(y.shape)
    got = pool_backward(dy, idx, p, dense, x.shape)
    ref = np.zeros(x.shape)
    for c in range(2):
        for f in range(3):
            for a in range(noff):
                for b in range(noff):
                    g = f * noff * noff + a * noff + b
                    for i in range(y.shape[2]):
                        for j in range(y.shape[3]):
                            win = x[c, f, a + i * p:a + i * p + p, b + j * p:b + j * p + p].ravel()
                            r = int(np.argmax(win))  # the first maximum in row-major order
                            ref[c, f, a + i * p + r // p, b + j * p + r % p] += dy[c, g, i, j]
    assert np.array_equal(got, ref)


@pytest.mark.parametrize("act", ["tanh", "stanh", "relu", "linear"])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("path", ["taps", "direct"])
def test_conv_matches_naive_forward_and_backward(act, k, path, monkeypatch):
    import mpfpipe.kernels._conv as conv
    import mpfpipe.kernels._taps as taps
    monkeypatch.setattr(taps, "TAP_COLS", 20)  # blocks of 2 rows of 8: several per fragment, a partial last one
    monkeypatch.setattr(conv, "DIRECT_MAX", 0 if path == "taps" else 10**6)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 2, 9, 8))
    w = rng.standard_normal((4, 3, k, k))
    b = rng.standard_normal(4)
    y = conv_forward(x, w, b, act)
    for f in range(2):
        z = naive.conv(x[:, f], w, b)
        np.testing.assert_allclose(y[:, f], naive.act(z, act), atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dw, db, dx = conv_backward(x, w, y, dy.copy(), act, need_dx=True)
    rw, rb, rx = np.zeros_like(w), np.zeros_like(b), np.zeros_like(x)
    for f in range(2):
        z = naive.conv(x[:, f], w, b)
        cache = [("conv", x[:, f], z, act, "c")]
        g = naive.backward(None, {"c.weight": w}, cache, dy[:, f])
        rw += g["c.weight"]
        rb += g["c.bias"]
        # input gradient: naive.backward returns it as the running gradient; recompute directly
        dz = dy[:, f] * naive.act_grad(z, act)
        for ky in range(k):
            for kx in range(k):
                rx[:, f, ky:ky + z.shape[1], kx:kx + z.shape[2]] += np.einsum("oc,ohw->chw", w[:, :, ky, kx], dz)
    np.testing.assert_allclose(dw, rw, atol=1e-10)
    np.testing.assert_allclose(db, rb, atol=1e-10)
    np.testing.assert_allclose(dx, rx, atol=1e-10)


@pytest.mark.parametrize("act", ["tanh", "stanh"])
def test_float32_tanh_approximation_is_within_a_few_ulp(act):
    from mpfpipe.kernels import bias_act_forward
    x = np.linspace(-12, 12, 400_001, dtype=np.float32)[None]
    y = x.copy()
    bias_act_forward(y, np.zeros(1, np.float32), act)
    ref = naive.act(x.astype(np.float64), act)
    ulp = np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
    assert (np.abs(y - ref) / ulp).max() <= 8
    assert y[0, 200_000] == 0.0 and np.array_equal(y[0, ::-1], -y[0])  # odd


def _mlp_reference(x2, layers, dout2):
    """Plain numpy per-pixel MLP over the columns of x2 (C, N): outputs, then gradients by the chain rule."""
    acts, zs = [x2], []
    for w, b, a in layers:
        z = w.reshape(w.shape[0], -1) @ acts[-1] + b[:, None]
        zs.append(z)
        acts.append(naive.act(z, a))
    g, grads = dout2, []
    for (w, b, a), z, a_in in zip(layers[::-1], zs[::-1], acts[-2::-1]):
        g = g * naive.act_grad(z, a)
        grads.append(((g @ a_in.T).reshape(w.shape), g.sum(1)))
        g = w.reshape(w.shape[0], -1).T @ g
    return acts[-1], grads[::-1], g


@pytest.mark.parametrize("acts", [("linear",), ("tanh", "linear"), ("stanh", "relu", "linear")])
@pytest.mark.parametrize("shape", [(8, 3, 7, 5), (5, 2, 40, 30)])  # 105 and 2,400 pixels: one and several blocks
def test_fused_head_matches_a_numpy_mlp(acts, shape):
    from mpfpipe.kernels import backward_head, forward_head
    rng = np.random.default_rng(2)
    C, F, h, w = shape
    dims = [C] + [rng.integers(1, 11) for _ in acts[:-1]] + [3]  # hidden sizes that are not multiples of 4
    layers = [(rng.standard_normal((dims[i + 1], dims[i], 1, 1)) * 0.5, rng.standard_normal(dims[i + 1]), a)
              for i, a in enumerate(acts)]
    x = rng.standard_normal(shape)
    y = forward_head(x, layers)
    dout = rng.standard_normal(y.shape)
    ref_y, ref_grads, ref_dx = _mlp_reference(x.reshape(C, -1), layers, dout.reshape(3, -1))
    np.testing.assert_allclose(y.reshape(3, -1), ref_y, atol=1e-12)
    grads, dx = backward_head(x, layers, dout, need_dx=True)
    for (dw, db), (rw, rb) in zip(grads, ref_grads):
        np.testing.assert_allclose(dw, rw, rtol=1e-11, atol=1e-10)
        np.testing.assert_allclose(db, rb, rtol=1e-11, atol=1e-10)
    np.testing.assert_allclose(dx.reshape(C, -1), ref_dx, atol=1e-10)
    assert backward_head(x, layers, dout, need_dx=False)[1] is None
    # float32: close to float64, and bit-identical on a second run
    x32 = x.astype(np.float32)
    l32 = [(w.astype(np.float32), b.astype(np.float32), a) for w, b, a in layers]
    y32 = forward_head(x32, l32)
    np.testing.assert_allclose(y32, y, rtol=1e-4, atol=1e-4)
    g1, d1 = backward_head(x32, l32, dout.astype(np.float32), True)
    g2, d2 = backward_head(x32, l32, dout.astype(np.float32), True)
    assert np.array_equal(d1, d2) and all(np.array_equal(a[0], b[0]) for a, b in zip(g1, g2))
    np.testing.assert_allclose(g1[0][0], grads[0][0], rtol=1e-3, atol=1e-3 * np.abs(grads[0][0]).max())


@pytest.mark.parametrize("shape,k,cout", [((2, 3, 11, 700), 5, 5), ((3, 2, 6, 19), 7, 4), ((1, 1, 9, 8), 1, 3)])
def test_direct_conv_chunks_taps_and_map_groups(shape, k, cout):
    """The flattened-row direct kernels: 700-wide rows make several chunks (the last one partial), k = 5 / 7 mix
    the four-tap passes with single taps, 5 output maps mix the four-map passes with a single one."""
    from mpfpipe.kernels._direct import CHUNK, conv_direct_dinput, conv_direct_dweight, conv_direct_forward
    rng = np.random.default_rng(3)
    C, F, h, W = shape
    x = rng.standard_normal(shape)
    w = rng.standard_normal((cout, C, k, k))
    oh, ow = h - k + 1, W - k + 1
    assert shape[3] < 700 or CHUNK // W < oh  # the first case does span several chunks
    y = np.empty((cout, F, oh, ow))
    conv_direct_forward(x, w, y)
    ref = np.stack([naive.conv(x[:, f], w, np.zeros(cout)) for f in range(F)], axis=1)
    np.testing.assert_allclose(y, ref, atol=1e-11)
    dy = rng.standard_normal(y.shape)
    dw = np.zeros(w.shape)
    conv_direct_dweight(x, dy, dw)
    dx = np.zeros_like(x)
    conv_direct_dinput(dy, w, dx)
    rw, rx = np.zeros_like(w), np.zeros_like(x)
    for ky in range(k):
        for kx in range(k):
            patch = x[:, :, ky:ky + oh, kx:kx + ow]
            rw[:, :, ky, kx] = np.einsum("ofyx,cfyx->oc", dy, patch)
            rx[:, :, ky:ky + oh, kx:kx + ow] += np.einsum("oc,ofyx->cfyx", w[:, :, ky, kx], dy)
    np.testing.assert_allclose(dw, rw, atol=1e-9)
    np.testing.assert_allclose(dx, rx, atol=1e-11)


@pytest.mark.parametrize("act", ["tanh", "relu"])
@pytest.mark.parametrize("need_dx", [True, False])
def test_fused_output_layer_equals_two_separate_layers(act, need_dx, monkeypatch):
    """conv_forward_post / conv_backward_post (fc1 + the linear output layer in one blocked kernel) against the two
    layers run one after the other, float64; small TAP_COLS: many blocks, partial ones, several fragments."""
    import mpfpipe.kernels._conv as conv
    from mpfpipe.kernels import conv_backward_post, conv_forward_post
    import mpfpipe.kernels._taps as taps
    monkeypatch.setattr(taps, "TAP_COLS", 13)  # 2 rows of 6 per block: 3 blocks a fragment, the last partial
    rng = np.random.default_rng(4)
    x = rng.standard_normal((12, 3, 7, 6))
    w, b = rng.standard_normal((20, 12, 3, 3)) * 0.3, rng.standard_normal(20)
    wp, bp = rng.standard_normal((3, 20, 1, 1)), rng.standard_normal(3)
    assert not conv.use_direct(12, 20, 3)
    y, z = conv_forward_post(x, w, b, act, wp, bp)
    y_ref = conv_forward(x, w, b, act)
    z_ref = conv_forward(y_ref, wp, bp, "linear")
    np.testing.assert_allclose(y, y_ref, atol=1e-12)
    np.testing.assert_allclose(z, z_ref, atol=1e-12)
    dz = rng.standard_normal(z.shape)
    dw, db, dx, dwp, dbp = conv_backward_post(x, w, y, dz, act, need_dx, wp)
    dwp_ref, dbp_ref, dy_ref = conv_backward(y_ref, wp, z_ref, dz.copy(), "linear", True)
    dw_ref, db_ref, dx_ref = conv_backward(x, w, y_ref, dy_ref, act, need_dx)
    for got, ref in ((dw, dw_ref), (db, db_ref), (dwp, dwp_ref), (dbp, dbp_ref)):
        np.testing.assert_allclose(got, ref, rtol=1e-11, atol=1e-11)
    if need_dx:
        np.testing.assert_allclose(dx, dx_ref, atol=1e-11)
    else:
        assert dx is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_p2_inference_pooling_on_whole_vectors_equals_its_rule(dtype):
    """MPF p = 2 inference rows wide enough for the vector path (`_pool._pool2_row`: 2 whole vectors of outputs
    and a scalar tail). With ties and no NaN: the arg-max path's values bit for bit, and a numpy max. With NaNs in
    either row, at even and odd columns and in the tail: its rule computed in numpy (row maxima first, then
    columns, each ``a if a > b else b``)."""
    lanes = 64 // np.dtype(dtype).itemsize
    n = 2 * lanes + 5
    rng = np.random.default_rng(7)
    x = (np.round(rng.standard_normal((2, 3, 2 * 6 + 1, 2 * n + 1)) * 2) / 2).astype(dtype)
    y_idx, _ = pool_forward(x, 2, True)
    y, _ = pool_forward(x, 2, True, need_idx=False)
    assert y.shape[3] == n
    np.testing.assert_array_equal(y, y_idx)
    win = np.stack([x[:, :, a:a + 12, b:b + 2 * n] for a in range(2) for b in range(2)], axis=2)
    want = win.reshape(2, 3, 4, 6, 2, n, 2).max(axis=(4, 6)).reshape(y.shape)
    np.testing.assert_array_equal(y, want)
    for c, f, r, col in [(0, 0, 0, 0), (0, 0, 1, 3), (0, 1, 4, 2 * lanes), (1, 2, 7, 2 * n - 1), (1, 0, 2, 2 * n),
                         (1, 1, 9, 2 * lanes + 1), (1, 1, 10, 2 * lanes + 1)]:
        x[c, f, r, col] = np.nan
    y, _ = pool_forward(x, 2, True, need_idx=False)
    for a in range(2):
        r0, r1 = x[:, :, a:a + 12:2], x[:, :, a + 1:a + 13:2]
        colmax = np.where(r1 > r0, r1, r0)
        e = np.where(colmax[..., 1:] > colmax[..., :-1], colmax[..., 1:], colmax[..., :-1])
        for b in range(2):
            np.testing.assert_array_equal(y.reshape(2, 3, 2, 2, 6, n)[:, :, a, b], e[..., b:b + 2 * n:2])


@pytest.mark.parametrize("p,dense", [(2, True), (3, True), (4, True), (2, False), (3, False)])  # 2, 3: de-interleaved
def test_inference_pooling_without_argmax_gives_the_same_values(p, dense):
    """pool_forward(need_idx=False), the inference path, against the arg-max path and a numpy max over windows,
    with ties (a coarse value grid) and a NaN, which both paths keep only where the arg-max path would."""
    rng = np.random.default_rng(p)
    h = 4 * p + (p - 1 if dense else 0)
    x = np.round(rng.standard_normal((3, 2, h, h + p)) * 2) / 2
    x[0, 0, 1, 1] = np.nan
    y_idx, idx = pool_forward(x, p, dense)
    y, none = pool_forward(x, p, dense, need_idx=False)
    assert none is None
    np.testing.assert_array_equal(y, y_idx)  # NaN positions equal too
    noff = p if dense else 1
    for c in range(3):
        for f in range(2):
            for a in range(noff):
                for b in range(noff):
                    g = f * noff * noff + a * noff + b
                    win = x[c, f, a:a + 4 * p, b:b + y.shape[3] * p].reshape(4, p, y.shape[3], p)
                    if not np.isnan(win).any():
                        np.testing.assert_array_equal(y[c, g], win.max(axis=(1, 3)))
