"""The bucket-queue watershed (data.flood) against scikit-image's watershed, the peer it follows, and by hand."""
from __future__ import annotations

import naive
import numpy as np
import pytest
from skimage.segmentation import watershed

from mpfpipe.data.flood import LEVELS, flood, levels, raster_ids


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_labels_as_scikit_image_when_no_two_pixels_tie(seed):
    # every pixel its own level: the pop order is the value order in both, so the floods are identical
    rng = np.random.default_rng(seed)
    shape = (40, 50)
    p = (rng.permutation(shape[0] * shape[1]) + 1).reshape(shape) / (LEVELS - 1)
    markers = np.zeros(shape, np.int64)
    where = rng.choice(p.size, 12, replace=False)
    markers.ravel()[where] = np.arange(1, 13)
    got = flood(levels(p), markers)
    assert np.array_equal(got, watershed(p, markers))


@pytest.mark.parametrize("left, right, ridge", [(50, 60, 1), (60, 50, 2)])
def test_a_ridge_goes_to_the_side_that_reaches_it_lower(left, right, ridge):
    # level 0 fills first, first in first out from both seeds; then the lower of the two passes (50 or 60) is
    # popped first and labels the ridge pixel (4000) with its side's id, as scikit-image's heap does
    level = np.array([[0, 0, left, 4000, right, 0, 0]], np.uint16)
    markers = np.array([[1, 0, 0, 0, 0, 0, 2]])
    got = flood(level, markers)
    assert got.tolist() == [[1, 1, 1, ridge, 2, 2, 2]]
    assert np.array_equal(got, watershed(level.astype(float), markers))
    assert flood(level, np.zeros_like(markers)).max() == 0  # no seed: nothing labelled
    assert markers.tolist() == [[1, 0, 0, 0, 0, 0, 2]]  # the markers are not changed


def test_levels():
    assert levels(np.array([0.0, 0.5, 1.0, 1.5, -0.1])).tolist() == [0, 2048, 4095, 4095, 0]


def test_raster_ids_by_hand():
    lab = np.array([[0, 7, 7],
                    [3, 0, 9],
                    [7, 3, 0]])
    lut, n = raster_ids(lab)  # first met: 7, then 3, then 9
    assert n == 3 and lut[lab].tolist() == [[0, 1, 1], [2, 0, 3], [1, 2, 0]]
    lut, n = raster_ids(lab, start=10)
    assert n == 3 and lut[[0, 3, 7, 9, 5]].tolist() == [0, 12, 11, 13, 0]


@pytest.mark.parametrize("seed", range(4))
def test_same_labels_as_a_heap_flood_with_many_ties(seed):
    """Against tests/naive.py's heap flood (ties first in, first out): few levels (most pixels tie), sparse and
    dense markers, odd shapes down to one row or column."""
    rng = np.random.default_rng(seed)
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        level = rng.integers(0, int(rng.integers(1, 12)), (h, w)).astype(np.uint16)
        markers = np.where(rng.random((h, w)) < rng.choice([0.01, 0.1, 0.6]), rng.integers(1, 7, (h, w)), 0)
        assert np.array_equal(flood(level, markers), naive.priority_flood(level, markers)), (h, w)
