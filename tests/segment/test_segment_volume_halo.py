"""The pieces of 3D segmentation that need no network: a block's z halo read as the whole volume's mirror padding
would give it, the pyramid's z rule (neuroglancer's near-isotropic one) and its 2 x 2 x 2 reductions, by hand."""
import itertools

import numpy as np
import pytest

from mpfpipe.segment.blocks import block_grid, read_with_halo3
from mpfpipe.segment.omezarr import _multiscales
from mpfpipe.segment.pyramid import halve_mean, halve_mode, level_shape, source_indices, z_levels


@pytest.mark.parametrize("block", [(1, 4, 4), (2, 9, 11), (3, 5, 2), (5, 9, 11)])
def test_z_halo_read_is_the_whole_volume_mirrored(block):
    rng = np.random.default_rng(0)
    vol = rng.normal(size=(5, 2, 9, 11))  # (Z, C, Y, X) as Volume.read returns it
    halo3 = ((7, 3), (4, 4), (3, 12))  # z halo larger than the volume: reflected again, as numpy.pad does

    def read(z0, z1, yr, xr):
        return vol[z0:z1, :, yr[0]:yr[1], xr[0]:xr[1]]

    whole = np.pad(np.moveaxis(vol, 1, 0), ((0, 0), *halo3), mode="symmetric")
    for b in block_grid((5, 9, 11), block):
        got = read_with_halo3(read, b, (5, 9, 11), halo3)
        ctx = [lo + hi for lo, hi in halo3]
        want = whole[:, b.z[0]:b.z[1] + ctx[0], b.y[0]:b.y[1] + ctx[1], b.x[0]:b.x[1] + ctx[2]]
        assert got.shape == want.shape and np.array_equal(got, want)


def test_z_levels_by_hand():
    # ISBI 2012, 50 x 4 x 4 nm: t = 8, 16, 32, 64 keep z (|50 - t| <= |100 - t|), t = 128 halves it (78 > 28)
    assert z_levels(6, [50.0, 4.0, 4.0], volume_net=True, known=True) == (5,)
    assert z_levels(5, [50.0, 4.0, 4.0], volume_net=True, known=True) == ()
    assert z_levels(3, [1.0, 1.0, 1.0], volume_net=True, known=True) == (1, 2)  # isotropic: every level
    # z twice y: level 1 (t = 2) ties |2 - 2| = 0 against |4 - 2| = 2, kept; level 2 (t = 4): 2 > 0, halved
    assert z_levels(4, [2.0, 1.0, 1.0], volume_net=True, known=True) == (2, 3)
    assert z_levels(4, [1.0, 1.0, 1.0], volume_net=False, known=True) == ()  # a 2D model keeps z
    assert z_levels(4, [1.0, 1.0, 1.0], volume_net=True, known=False) == ()  # no voxel size recorded
    assert level_shape((9, 40, 30), 2, (2,)) == (5, 10, 8) and level_shape((9, 40, 30), 2) == (9, 10, 8)


def test_halving_over_z_by_hand():
    a = np.arange(12, dtype=np.float64).reshape(3, 2, 2)
    # sections 0-1 -> mean of 0..7 = 3.5; the odd section 2 is repeated -> mean of 8..11 = 9.5
    assert np.array_equal(halve_mean(a, z=True), np.array([[[3.5]], [[9.5]]]))
    assert np.array_equal(halve_mean(a), a.reshape(3, 4).mean(axis=1).reshape(3, 1, 1))
    u = np.array([[[1, 2], [3, 4]], [[5, 6], [7, 8]]], np.uint8)
    assert halve_mean(u, z=True).item() == 4  # 4.5 rounded half to even
    lab = np.array([[[5, 1], [2, 3]], [[1, 7], [6, 8]]], np.uint8)
    assert halve_mode(lab, z=True).item() == 1  # 1 twice
    lab[1, 0, 0] = 9
    assert halve_mode(lab, z=True).item() == 5  # eight different: the first in window order (z, y, x)
    assert halve_mode(lab).tolist() == [[[5]], [[9]]]  # without z: per section, as before


def test_sources_span_two_z_blocks():
    from mpfpipe.segment.blocks import Block
    b = Block((1, 0, 0), (2, 4), (0, 8), (0, 8))  # level 1 halves z: z 2..3 <- level-0 sections 4..7
    assert source_indices((9, 16, 16), (2, 8, 8), 1, b, (1,)) == [
        (iz, iy, ix) for iz, iy, ix in itertools.product((2, 3), (0, 1), (0, 1))]
    assert source_indices((9, 16, 16), (2, 8, 8), 1, Block((1, 0, 0), (2, 4), (0, 8), (0, 8))) == [
        (1, 0, 0), (1, 0, 1), (1, 1, 0), (1, 1, 1)]


def test_multiscales_scale_z_at_its_levels():
    ms = _multiscales("p", [], [1.0, 50.0, 4.0, 4.0], 3, zlevels=(2,))["multiscales"][0]["datasets"]
    assert [d["coordinateTransformations"][0]["scale"] for d in ms] == [[1.0, 50.0, 4.0, 4.0], [1.0, 50.0, 8.0, 8.0],
                                                                        [1.0, 100.0, 16.0, 16.0]]
    assert ms[2]["coordinateTransformations"][1]["translation"] == [0.0, 25.0, 6.0, 6.0]
