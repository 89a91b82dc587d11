"""Block grid, symmetric mirroring of the halo, and the padded dense pass (no Dask, no Zarr)."""
import numpy as np
import pytest

from mpfpipe.arch import preset
from mpfpipe.fragment import PAD_MODE, dense_forward, dense_logits, dense_logits_padded
from mpfpipe.params import init_params
from mpfpipe.segment.blocks import Block, Engine, block_grid, compute_block, halo_indices, read_with_halo, reflect


@pytest.mark.parametrize("n", [1, 2, 3, 7])
@pytest.mark.parametrize("pad", [0, 1, 5, 20])
def test_reflect_matches_numpy_symmetric_pad(n, pad):
    a = np.arange(n)
    ref = np.pad(a, (pad, pad + 3), mode=PAD_MODE)
    assert np.array_equal(a[reflect(np.arange(-pad, n + pad + 3), n)], ref)


def test_block_grid_covers_volume_once():
    shape, block = (3, 50, 71), (2, 16, 30)
    seen = np.zeros(shape, int)
    blocks = block_grid(shape, block)
    for b in blocks:
        seen[slice(*b.z), slice(*b.y), slice(*b.x)] += 1
    assert (seen == 1).all()
    assert len(blocks) == 2 * 4 * 3 and blocks[-1].shape == (1, 2, 11)


def test_read_with_halo_equals_padding_the_whole_slice():
    rng = np.random.default_rng(0)
    vol = rng.integers(0, 255, size=(2, 1, 23, 31)).astype(np.uint8)

    def read(z0, z1, yr, xr):
        return vol[z0:z1, :, yr[0]:yr[1], xr[0]:xr[1]]

    before, after = 9, 10
    full = np.pad(vol[1, 0], ((before, after), (before, after)), mode=PAD_MODE)
    for yr, xr in [((0, 23), (0, 31)), ((5, 12), (20, 31)), ((0, 1), (30, 31))]:
        got = read_with_halo(read, (1, 2), yr, xr, (23, 31), (before, after))[0, 0]
        assert np.array_equal(got, full[yr[0]:yr[1] + before + after, xr[0]:xr[1] + before + after])
    assert halo_indices(0, 2, 23, 3, 3).tolist() == [2, 1, 0, 0, 1, 2, 3, 4]


@pytest.mark.parametrize("name", ["n3", "steel"])
def test_dense_logits_padded_equals_dense_logits(name):
    net = preset(name, maps=3, hidden=5)
    params = init_params(net, 3)
    img = np.random.default_rng(1).normal(size=(41, 29)).astype(np.float32)
    before, after = net.halo
    padded = np.pad(img, ((before, after), (before, after)), mode=PAD_MODE)
    assert np.allclose(dense_logits_padded(net, params, padded), dense_logits(net, params, img), atol=1e-6)


def test_compute_block_equals_dense_forward_for_any_block():
    net = preset("steel", maps=3, hidden=6)
    params = init_params(net, 5)
    rng = np.random.default_rng(2)
    vol = rng.integers(0, 255, size=(1, 1, 45, 38)).astype(np.uint8)
    norm = {"mean": [100.0], "std": [50.0]}
    engine = Engine(net, params, norm)
    ref = dense_forward(net, params, (vol[0].astype(np.float32) - 100) / 50)

    def read(z0, z1, yr, xr):
        return vol[z0:z1, :, yr[0]:yr[1], xr[0]:xr[1]]

    for block in [(1, 45, 38), (1, 7, 13), (1, 17, 5)]:
        out = np.zeros_like(ref)
        for b in block_grid((1, 45, 38), block):
            probs, labels = compute_block(engine, read, b, lambda z: (45, 38))
            out[:, slice(*b.y), slice(*b.x)] = probs[:, 0]
            assert np.array_equal(labels[0], probs[:, 0].argmax(0))
        assert np.abs(out - ref).max() <= 1e-6


def test_compute_block_outside_valid_region_is_fill():
    net = preset("steel", maps=2, hidden=3)
    engine = Engine(net, init_params(net, 0), {"mean": [0.0], "std": [1.0]})
    vol = np.ones((1, 1, 40, 40), np.float32)
    read = lambda z0, z1, yr, xr: vol[z0:z1, :, yr[0]:yr[1], xr[0]:xr[1]]  # noqa: E731
    probs, labels = compute_block(engine, read, Block((0, 0, 0), (0, 1), (0, 20), (0, 20)), lambda z: (10, 30))
    assert (labels[0, 10:] == 255).all() and (labels[0, :10] != 255).all()
    assert (probs[:, 0, 10:] == 0).all() and np.allclose(probs[:, 0, :10].sum(0), 1)
