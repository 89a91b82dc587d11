"""Naive reference implementations: the patch network on one window, in plain numpy, written for clarity.

This is the oracle of the engine tests. It shares no code with the engine's kernels: convolution is a sum of
shifted einsums, pooling a reshape + argmax (numpy's argmax takes the first maximum, the tie rule of the engine),
fc layers use the PyTorch (out, in) layout over the C-order flattened map.
"""
import numpy as np

from mpfpipe.arch import Conv, Pool

A, B = 1.7159, 2.0 / 3.0


def act(z, name):
    if name == "tanh":
        return np.tanh(z)
    if name == "stanh":
        return A * np.tanh(B * z)
    if name == "relu":
        return np.maximum(z, 0.0)
    return z


def act_grad(z, name):
    if name == "tanh":
        return 1.0 - np.tanh(z) ** 2
    if name == "stanh":
        return A * B * (1.0 - np.tanh(B * z) ** 2)
    if name == "relu":
        return (z > 0).astype(z.dtype)
    return np.ones_like(z)


def conv(x, w, b):
    """Valid cross-correlation of x (C, h, w) with w (O, C, k, k)."""
    k = w.shape[2]
    oh, ow = x.shape[1] - k + 1, x.shape[2] - k + 1
    z = np.zeros((w.shape[0], oh, ow))
    for ky in range(k):
        for kx in range(k):
            z += np.einsum("oc,chw->ohw", w[:, :, ky, kx], x[:, ky:ky + oh, kx:kx + ow])
    return z + b[:, None, None]


def conv_pool(x, w, b, act_name, p, dense):
    """MPF pool p of act(conv(x, w) + b) for stacked fragments x (C, F, h, w): (Cout, F * noff^2, m, n), offsets
    (a, c) < noff of fragment f at f * noff^2 + a * noff + c (noff = p when dense, else 1), what inference's fused
    conv + pool computes."""
    noff = p if dense else 1
    outs = []
    for f in range(x.shape[1]):
        z = act(conv(x[:, f], w, b), act_name)
        m, n = (z.shape[1] - noff + 1) // p, (z.shape[2] - noff + 1) // p
        for a in range(noff):
            for c in range(noff):
                outs.append(z[:, a:a + m * p, c:c + n * p].reshape(len(z), m, p, n, p).max(axis=(2, 4)))
    return np.stack(outs, axis=1)


def forward(net, tparams, window):
    """Logits (K,) of one window (C, w, w), and the cache for `backward`. tparams: PyTorch layout."""
    x = np.asarray(window, dtype=np.float64)
    cache = []
    n_conv = n_fc = 0
    for layer in net.layers:
        if isinstance(layer, Conv):
            n_conv += 1
            w, b = tparams[f"conv{n_conv}.weight"], tparams[f"conv{n_conv}.bias"]
            z = conv(x, w, b)
            cache.append(("conv", x, z, layer.act, f"conv{n_conv}"))
            x = act(z, layer.act)
        elif isinstance(layer, Pool):
            p = layer.p
            C, h, _ = x.shape
            m = h // p
            assert m * p == h, "naive pooling needs an exact window"
            blocks = x.reshape(C, m, p, m, p).transpose(0, 1, 3, 2, 4).reshape(C, m, m, p * p)
            arg = blocks.argmax(axis=-1)
            cache.append(("pool", x.shape, arg, p))
            x = blocks.max(axis=-1)
        else:
            n_fc += 1
            v = x.reshape(-1)
            w, b = tparams[f"fc{n_fc}.weight"], tparams[f"fc{n_fc}.bias"]
            z = w @ v + b
            cache.append(("fc", x.shape, v, z, layer.act, f"fc{n_fc}"))
            x = act(z, layer.act)
    return x.reshape(-1), cache


def backward(net, tparams, cache, dlogits):
    """Gradients (PyTorch layout) of a scalar loss whose gradient w.r.t. the logits is dlogits."""
    grads = {}
    g = np.asarray(dlogits, dtype=np.float64)
    for entry in reversed(cache):
        kind = entry[0]
        if kind == "fc":
            _, in_shape, v, z, a, name = entry
            dz = g * act_grad(z, a)
            grads[f"{name}.weight"] = np.outer(dz, v)
            grads[f"{name}.bias"] = dz
            g = (tparams[f"{name}.weight"].T @ dz).reshape(in_shape)
        elif kind == "pool":
            _, in_shape, arg, p = entry
            C, h, _ = in_shape
            m = h // p
            dx = np.zeros(in_shape)
            for c in range(C):
                for i in range(m):
                    for j in range(m):
                        r = arg[c, i, j]
                        dx[c, i * p + r // p, j * p + r % p] += g[c, i, j]
            g = dx
        else:
            _, x, z, a, name = entry
            dz = g * act_grad(z, a)
            w = tparams[f"{name}.weight"]
            k = w.shape[2]
            oh, ow = dz.shape[1:]
            dw = np.zeros_like(w)
            dx = np.zeros_like(x)
            for ky in range(k):
                for kx in range(k):
                    dw[:, :, ky, kx] = np.einsum("ohw,chw->oc", dz, x[:, ky:ky + oh, kx:kx + ow])
                    dx[:, ky:ky + oh, kx:kx + ow] += np.einsum("oc,ohw->chw", w[:, :, ky, kx], dz)
            grads[f"{name}.weight"] = dw
            grads[f"{name}.bias"] = dz.sum(axis=(1, 2))
            g = dx
    return grads


def xent(logits, label, weights):
    """(weighted loss, d loss / d logits) of one window; label None = ignored."""
    if label is None:
        return 0.0, np.zeros_like(logits)
    z = logits - logits.max()
    p = np.exp(z) / np.exp(z).sum()
    w = 1.0 if weights is None else weights[label]
    d = p.copy()
    d[label] -= 1.0
    return -w * np.log(p[label]), w * d


def mirror_window(image, y, x, window):
    """The window centred on (y, x) (centre at offset (w-1)//2) of the symmetric-mirrored image (C, H, W)."""
    before = (window - 1) // 2
    after = window - 1 - before
    padded = np.pad(image, ((0, 0), (before, after), (before, after)), mode="symmetric")
    return padded[:, y:y + window, x:x + window]


def image_outputs(net, tparams, image):
    """Softmax probabilities (K, H, W) of the patch net at every pixel, window by window."""
    _, H, W = image.shape
    out = np.zeros((net.n_classes, H, W))
    for y in range(H):
        for x in range(W):
            z, _ = forward(net, tparams, mirror_window(image, y, x, net.window))
            e = np.exp(z - z.max())
            out[:, y, x] = e / e.sum()
    return out


def image_loss_grad(net, tparams, image, labels, weights=None, ignore=255):
    """Sum over every window of the patch losses and gradients (PyTorch layout)."""
    _, H, W = image.shape
    total, grads = 0.0, {k: np.zeros_like(v) for k, v in tparams.items()}
    for y in range(H):
        for x in range(W):
            lab = None if labels[y, x] == ignore else int(labels[y, x])
            if lab is None:
                continue
            z, cache = forward(net, tparams, mirror_window(image, y, x, net.window))
            loss, d = xent(z, lab, weights)
            total += loss
            for k, g in backward(net, tparams, cache, d).items():
                grads[k] += g
    return total, grads


def assert_dense_equals_patch_net(net, size, seed):
    """The fragment engine (float64) against this module's patch net on a seeded random image of ``size``, with
    scaled weights and non-zero biases: the output at every pixel and the loss and gradient summed over all windows
    (the engine is imported here only, for the tests that share this check)."""
    import pytest

    from mpfpipe.fragment import dense_forward, dense_loss_grad
    from mpfpipe.params import init_params, to_torch_layout
    rng = np.random.default_rng(seed)
    params = {k: v * 2.0 + (0.1 * rng.standard_normal(v.shape) if k.endswith("bias") else 0)
              for k, v in init_params(net, 2, np.float64).items()}
    image = rng.standard_normal((net.in_channels, *size))
    labels = (rng.random(size) > 0.7).astype(np.uint8)
    out = dense_forward(net, params, image, dtype=np.float64)
    got = dense_loss_grad(net, params, image, labels, dtype=np.float64)
    tp = to_torch_layout(net, params)
    np.testing.assert_allclose(out, image_outputs(net, tp, image), rtol=0, atol=1e-10)
    loss, ref = image_loss_grad(net, tp, image, labels)
    assert got.loss == pytest.approx(loss, rel=1e-10)
    got_t = to_torch_layout(net, got.grad)
    scale = max(np.abs(g).max() for g in ref.values())
    for key in ref:
        np.testing.assert_allclose(got_t[key], ref[key], rtol=0, atol=1e-9 * scale, err_msg=key)


# -- 3D: the patch network on one (C, wz, wy, wx) window -----------------------------------------------------------
# The same network, one window at a time, in the PyTorch Conv3d layout: conv weight (O, C, kz, ky, kx) as
# cross-correlation, pool (pz, p, p) windows flattened in (z, y, x) order with numpy's first-maximum argmax, fc weight
# (out, C*ez*ey*ex) over the C-order flattened map. Sums over taps with tensordot (BLAS): the full-size presets' windows
# (n337: 86^3 voxels, 80 maps) cost seconds each in plain loops of einsum.
def _taps3(w):
    kz, ky, kx = w.shape[2:]
    return [(a, b, c) for a in range(kz) for b in range(ky) for c in range(kx)]


def conv3(x, w, b):
    """Valid cross-correlation of x (C, d, h, w) with w (O, C, kz, ky, kx)."""
    out = [n - k + 1 for n, k in zip(x.shape[1:], w.shape[2:])]
    z = np.zeros((w.shape[0], *out))
    for a, bb, c in _taps3(w):
        z += np.tensordot(w[:, :, a, bb, c], x[:, a:a + out[0], bb:bb + out[1], c:c + out[2]], axes=(1, 0))
    return z + b[:, None, None, None]


def _pool3_blocks(x, p3):
    C = x.shape[0]
    m = [n // p for n, p in zip(x.shape[1:], p3)]
    assert [a * p for a, p in zip(m, p3)] == list(x.shape[1:]), "naive pooling needs an exact window"
    return x.reshape(C, m[0], p3[0], m[1], p3[1], m[2], p3[2]).transpose(0, 1, 3, 5, 2, 4, 6).reshape(
        C, *m, int(np.prod(p3)))


def forward3(net, tparams, window):
    """Logits (K,) of one volume window (C, wz, wy, wx), and the cache for `backward3`. tparams: PyTorch layout."""
    x = np.asarray(window, dtype=np.float64)
    cache = []
    n_conv = n_fc = 0
    for layer in net.layers:
        if isinstance(layer, Conv):
            n_conv += 1
            name = f"conv{n_conv}"
            z = conv3(x, tparams[f"{name}.weight"], tparams[f"{name}.bias"])
            cache.append(("conv", x, z, layer.act, name))
            x = act(z, layer.act)
        elif isinstance(layer, Pool):
            blocks = _pool3_blocks(x, layer.p3)
            cache.append(("pool", x.shape, blocks.argmax(axis=-1), layer.p3))
            x = blocks.max(axis=-1)
        else:
            n_fc += 1
            name = f"fc{n_fc}"
            v = x.reshape(-1)
            z = tparams[f"{name}.weight"] @ v + tparams[f"{name}.bias"]
            cache.append(("fc", x.shape, v, z, layer.act, name))
            x = act(z, layer.act)
    return x.reshape(-1), cache


def backward3(net, tparams, cache, dlogits):
    """Gradients (PyTorch layout) of a scalar loss whose gradient w.r.t. the logits is dlogits."""
    grads = {}
    g = np.asarray(dlogits, dtype=np.float64)
    for entry in reversed(cache):
        kind = entry[0]
        if kind == "fc":
            _, in_shape, v, z, a, name = entry
            dz = g * act_grad(z, a)
            grads[f"{name}.weight"] = np.outer(dz, v)
            grads[f"{name}.bias"] = dz
            g = (tparams[f"{name}.weight"].T @ dz).reshape(in_shape)
        elif kind == "pool":
            _, in_shape, arg, p3 = entry
            dx = np.zeros(in_shape)
            for (c, i, j, k), r in np.ndenumerate(arg):
                tz, ty, tx = np.unravel_index(r, p3)
                dx[c, i * p3[0] + tz, j * p3[1] + ty, k * p3[2] + tx] += g[c, i, j, k]
            g = dx
        else:
            _, x, z, a, name = entry
            dz = g * act_grad(z, a)
            w = tparams[f"{name}.weight"]
            out = dz.shape[1:]
            dw = np.zeros_like(w)
            dx = np.zeros_like(x)
            for ta, tb, tc in _taps3(w):
                sl = (slice(None), slice(ta, ta + out[0]), slice(tb, tb + out[1]), slice(tc, tc + out[2]))
                dw[:, :, ta, tb, tc] = np.tensordot(dz, x[sl], axes=([1, 2, 3], [1, 2, 3]))
                dx[sl] += np.tensordot(w[:, :, ta, tb, tc], dz, axes=(0, 0))
            grads[f"{name}.weight"] = dw
            grads[f"{name}.bias"] = dz.sum(axis=(1, 2, 3))
            g = dx
    return grads


def mirror_window3(volume, z, y, x, window3):
    """The window centred on voxel (z, y, x) (centre at offset (w-1)//2 per axis) of the symmetric-mirrored volume."""
    pad = [(0, 0)] + [((w - 1) // 2, w - 1 - (w - 1) // 2) for w in window3]
    padded = np.pad(volume, pad, mode="symmetric")
    wz, wy, wx = window3
    return padded[:, z:z + wz, y:y + wy, x:x + wx]


def volume_pass(net, tparams, volume, labels=None, weights=None, ignore=255):
    """Window by window over every voxel: the patch net's softmax (K, Z, Y, X), and the summed loss and gradients
    (PyTorch layout) of the labelled voxels (``labels`` None: none), each window run forward once."""
    out = np.zeros((net.n_classes, *volume.shape[1:]))
    total, grads = 0.0, {k: np.zeros_like(v) for k, v in tparams.items()}
    for z, y, x in np.ndindex(*volume.shape[1:]):
        logits, cache = forward3(net, tparams, mirror_window3(volume, z, y, x, net.window3))
        e = np.exp(logits - logits.max())
        out[:, z, y, x] = e / e.sum()
        if labels is not None and labels[z, y, x] != ignore:
            loss, d = xent(logits, int(labels[z, y, x]), weights)
            total += loss
            for k, g in backward3(net, tparams, cache, d).items():
                grads[k] += g
    return out, total, grads


def assert_dense_equals_patch_net3(net, size, seed, labelled=1.0, act_scale=2.0):
    """`assert_dense_equals_patch_net` for a 3D net on a seeded random (C, *size) volume: the dense softmax at every
    voxel, and the loss and gradient summed over the windows of the labelled voxels (a ``labelled`` fraction of
    them, the rest ignored: each labelled voxel costs the naive net a backward pass)."""
    import pytest

    from mpfpipe.fragment import dense_forward, dense_loss_grad
    from mpfpipe.params import init_params, to_torch_layout
    rng = np.random.default_rng(seed)
    params = {k: v * act_scale + (0.1 * rng.standard_normal(v.shape) if k.endswith("bias") else 0)
              for k, v in init_params(net, seed, np.float64).items()}
    volume = rng.standard_normal((net.in_channels, *size))
    labels = rng.integers(0, net.n_classes, size=size).astype(np.uint8)
    labels[rng.random(size) >= labelled] = 255
    out = dense_forward(net, params, volume, dtype=np.float64)
    got = dense_loss_grad(net, params, volume, labels, dtype=np.float64)
    tp = to_torch_layout(net, params)
    ref, loss, grads = volume_pass(net, tp, volume, labels)
    assert out.shape == (net.n_classes, *size)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-10)
    assert got.loss == pytest.approx(loss, rel=1e-10)
    got_t = to_torch_layout(net, got.grad)
    assert set(got_t) == set(grads)
    scale = max(np.abs(g).max() for g in grads.values())
    for key in grads:
        np.testing.assert_allclose(got_t[key], grads[key], rtol=0, atol=1e-9 * scale, err_msg=key)
    return got


def priority_flood(level, markers):
    """Seeded watershed by a heap, as `mpfpipe.data.flood` specifies it: every labelled pixel queued in raster
    order at its level; the lowest level popped first, ties first in, first out (the heap's key is (level, order
    of queueing)); a popped pixel labels its unlabelled 4-neighbours (up, left, right, down) and queues them."""
    import heapq
    lab = np.array(markers, dtype=np.int64)
    h, w = lab.shape
    heap, count = [], 0
    for y in range(h):
        for x in range(w):
            if lab[y, x] != 0:
                heap.append((int(level[y, x]), count, y, x))
                count += 1
    heapq.heapify(heap)
    while heap:
        _, _, y, x = heapq.heappop(heap)
        for dy, dx in ((-1, 0), (0, -1), (0, 1), (1, 0)):
            j, i = y + dy, x + dx
            if 0 <= j < h and 0 <= i < w and lab[j, i] == 0:
                lab[j, i] = lab[y, x]
                heapq.heappush(heap, (int(level[j, i]), count, j, i))
                count += 1
    return lab
