"""The instance step's seeds (data.peaks): scikit-image's peak_local_max, the same peaks in the same order."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.feature import peak_local_max as skimage_peaks

from mpfpipe.data.peaks import peak_local_max
from mpfpipe.data.watershed import _squared_distance


def test_hand_made_peaks_spacing_and_order():
    img = np.zeros((12, 20))
    img[2, 2] = img[2, 5] = img[9, 16] = 7  # equal maxima: ordered by raster order
    img[9, 2] = 5  # a maximum only while no 7 lies within d (Chebyshev) of it: the filter's half width
    # d = 3: (2, 5) is exactly 3 from (2, 2), not below it, and is kept
    assert peak_local_max(img, 3).tolist() == [[2, 2], [2, 5], [9, 16], [9, 2]]
    # d = 4: (2, 5) is 3 < 4 from (2, 2), kept before it: dropped; (9, 2) is 7 rows away
    assert peak_local_max(img, 4).tolist() == [[2, 2], [9, 16], [9, 2]]
    # d = 8: (2, 2) lies within 8 of (9, 2), which is then no maximum; (9, 16) is 14 columns from (2, 2)
    assert peak_local_max(img, 8).tolist() == [[2, 2], [9, 16]]
    plateau = np.zeros((5, 5))
    plateau[1:3, 1:3] = 1  # a plateau of 4 maxima: d = 1 keeps all four in raster order, d = 2 the first only
    assert peak_local_max(plateau, 1).tolist() == [[1, 1], [1, 2], [2, 1], [2, 2]]
    assert peak_local_max(plateau, 2).tolist() == [[1, 1]]
    assert peak_local_max(np.full((4, 4), 3.0), 1).shape == (0, 2)  # flat: no peak
    assert peak_local_max(np.ones((1, 1)), 3).shape == (0, 2)
    with pytest.raises(ValueError, match="min_distance >= 1"):
        peak_local_max(img, 0)


@pytest.mark.parametrize("kind", ["distance", "integers", "noise"])
def test_equals_scikit_image_in_value_and_order(kind):
    """Squared distance maps like the instance step's (whole-number plateaus and ties), small integers (many ties)
    and noise, of sizes 1 to 120, at spacings 1, 2, 3, 12 and 40."""
    rng = np.random.default_rng({"distance": 0, "integers": 1, "noise": 2}[kind])
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(1, 121, 2))
        if kind == "distance":
            smooth = ndimage.gaussian_filter(rng.random((h, w)), rng.uniform(0.5, 4))
            cells = smooth < np.quantile(smooth, rng.uniform(0.2, 0.9))
            img = _squared_distance(cells).astype(np.float32) if cells.any() else np.zeros((h, w), np.float32)
        elif kind == "integers":
            img = rng.integers(0, 4, (h, w)).astype(np.float32)
        else:
            img = rng.random((h, w))
        for d in (1, 2, 3, 12, 40):
            want = skimage_peaks(img, min_distance=d, exclude_border=False)
            got = peak_local_max(img, d)
            assert got.shape == (len(want), 2) and np.array_equal(got, want), (h, w, d)
