"""The z pooling of volume nets (kernels._zpool) on cases computed by hand: MPF offsets, first-maximum ties, the
accumulating backward pass, patch mode; and the 3D stitch as the inverse of unstitch."""
import numpy as np
import pytest

from mpfpipe.kernels import stitch3, unstitch3, zpool_backward, zpool_forward
from mpfpipe.kernels._par import variant

# one channel, one fragment, a 1 x 2 plane; depth 5: column q = 0 holds z = 1, 3, 3, 0, 5, column 1 holds 4, 2, 7, 7, 1
X = np.array([[1, 4], [3, 2], [3, 7], [0, 7], [5, 1]], dtype=np.float64).reshape(1, 5, 1, 1, 2)


@pytest.mark.parametrize("mode", ["serial", "parallel"])
def test_z_mpf_by_hand(mode):
    with variant(mode):
        y, idx = zpool_forward(X, 2, dense=True)
        dx = zpool_backward(np.ones_like(y), idx, 2, True, X.shape)
    assert y.shape == (1, 2, 2, 1, 2)  # (C, mz, F * pz offsets, m, n)
    # fragment a = offset 0: planes (0, 1), (2, 3); a = 1: planes (1, 2), (3, 4); ties go to the lower plane
    assert y[0, :, 0, 0].tolist() == [[3, 4], [3, 7]]
    assert y[0, :, 1, 0].tolist() == [[3, 7], [5, 7]]
    assert idx.reshape(2, 2, 2)[:, 0].tolist() == [[1, 0], [0, 0]]
    assert idx.reshape(2, 2, 2)[:, 1].tolist() == [[0, 1], [1, 0]]
    # each plane's gradient is the number of windows whose first maximum it holds
    assert dx[0, :, 0, 0].tolist() == [[0, 1], [2, 0], [1, 2], [0, 1], [1, 0]]


def test_z_pool_patch_mode_and_inference_by_hand():
    x = X[:, :4]
    y, idx = zpool_forward(x, 2, dense=False)
    assert y[0, :, 0, 0].tolist() == [[3, 4], [3, 7]] and idx.reshape(2, 2).tolist() == [[1, 0], [0, 0]]
    y2, none = zpool_forward(X, 2, dense=True, need_idx=False)
    assert none is None and np.array_equal(y2, zpool_forward(X, 2, dense=True)[0])
    with pytest.raises(ValueError, match="not exact"):
        zpool_forward(X, 2, dense=False)


def test_stitch3_places_every_fragment_offset():
    """Fragment digits per pool (a_y, b_x, c_z): voxel (z, y, x) of the dense map comes from offsets z % Sz etc."""
    pools = ((2, 1, 1), (1, 2, 2))  # Sz = 2, S = 2: 8 fragments of 1 x 2 x 1
    K, D, h, w = 1, 1, 2, 1
    frag = np.arange(K * D * 8 * h * w, dtype=np.float64).reshape(K, D, 8, h, w)
    dense = stitch3(frag, pools)
    assert dense.shape == (1, 2, 4, 2)
    for z, y, x in np.ndindex(2, 4, 2):
        a, b, c = y % 2, x % 2, z % 2  # pool 1's z offset c (its y, x offsets are 0); pool 2's y, x offsets a, b
        f = (((0 * 1 + 0) * 1 + c) * 2 + a) * 2 + b  # pool 2's digits (a, b) after pool 1's (0, 0, c), pz2 = 1
        assert dense[0, z, y, x] == frag[0, 0, f, y // 2, x // 2]
    assert np.array_equal(unstitch3(dense, pools), frag)
