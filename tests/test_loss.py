"""loss.xent (one Numba pass) against plain numpy: per-class sums, counts, errors, gradient; the bad-label error."""
import numpy as np
import pytest

from mpfpipe.errors import DataError
from mpfpipe.loss import IGNORE, xent


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("label_dtype", [np.uint8, np.int64])
def test_xent_matches_numpy(dtype, label_dtype):
    rng = np.random.default_rng(3)
    K, H, W = 3, 7, 5
    z = (rng.standard_normal((K, H, W)) * 3).astype(dtype)
    z[:, 0, 0] = 1.0  # a tie: arg-max is the first class
    lab = rng.integers(0, K, (H, W)).astype(label_dtype)
    lab[0, 0] = 2
    lab[1, :] = IGNORE
    w = np.array([0.5, 2.0, 1.5])
    closs, ccount, cerr, d = xent(z, lab, w)
    zz = z.astype(np.float64).reshape(K, -1)
    ll = lab.reshape(-1).astype(np.int64)
    valid = ll != IGNORE
    p = np.exp(zz - zz.max(0)) / np.exp(zz - zz.max(0)).sum(0)
    for k in range(K):
        sel = valid & (ll == k)
        assert ccount[k] == sel.sum()
        np.testing.assert_allclose(closs[k], -np.log(p[k, sel]).sum(), rtol=1e-6 if dtype == np.float32 else 1e-12)
        assert cerr[k] == (sel & (zz.argmax(0) != k)).sum()
    onehot = np.zeros_like(p)
    onehot[ll[valid], np.flatnonzero(valid)] = 1
    want = np.where(valid, w[np.where(valid, ll, 0)], 0.0) * (p - onehot)
    assert d.dtype == dtype and d.shape == z.shape
    np.testing.assert_allclose(d.reshape(K, -1), want, atol=1e-6 if dtype == np.float32 else 1e-14)


def test_xent_rejects_a_label_outside_the_classes():
    z = np.zeros((2, 3, 3))
    lab = np.zeros((3, 3), np.uint8)
    lab[2, 1] = 5
    with pytest.raises(DataError, match="label value 5 is not a class of this 2-class net"):
        xent(z, lab)
