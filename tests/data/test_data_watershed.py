"""One section's instances (data.watershed) on hand-made probability maps: the boundary means, the overlap
rule that joins objects across faces, merging by mean boundary probability and the minimum size."""
from __future__ import annotations

import numpy as np

from mpfpipe.data.watershed import boundary_means, overlap_pairs, section_instances


def test_boundary_means_by_hand():
    lab = np.array([[1, 1, 2],
                    [1, 3, 2]])
    p = np.array([[0.0, 0.2, 0.4],
                  [0.6, 0.8, 1.0]])
    a, b, m = boundary_means(lab, p)
    # pairs across: 1|2 at (0,1)-(0,2): 0.3; 1|3 at (1,0)-(1,1): 0.7 and (0,1)-(1,1) vertical: 0.5; 3|2 at
    # (1,1)-(1,2): 0.9
    assert a.tolist() == [1, 1, 2] and b.tolist() == [2, 3, 3]
    assert np.allclose(m, [0.3, 0.6, 0.9])


def test_overlap_pairs_keep_agreeing_objects_only():
    a = np.array([[1, 1, 1, 2, 2, 2]])
    b = np.array([[5, 5, 6, 6, 6, 6]])
    inside = np.ones_like(a, bool)
    ka, kb = overlap_pairs(a, b, inside, 0.5)
    # 1&5: 2 px of min(3, 2) -> yes; 1&6: 1 of min(3, 4) -> no; 2&6: 3 of 3 -> yes
    assert list(zip(ka.tolist(), kb.tolist())) == [(1, 5), (2, 6)]
    inside[0, :2] = False  # membrane pixels count neither in the overlap nor in the sizes
    ka, kb = overlap_pairs(a, b, inside, 0.5)
    assert list(zip(ka.tolist(), kb.tolist())) == [(1, 6), (2, 6)]  # 1 is 1 pixel now, all inside 6


def _two_cells(gap_p):
    """A 20 x 41 section: two 20 x 20 cells (p = 0.1) either side of a column (x = 20) of probability gap_p."""
    p = np.full((20, 41), 0.1, np.float32)
    p[:, 20] = gap_p
    return p


def test_a_membrane_separates_and_a_faint_line_merges():
    kw = dict(threshold=0.5, seed_distance=3, merge_threshold=0.4, min_size=10)
    ids = section_instances(_two_cells(0.9), **kw)
    assert np.unique(ids).tolist() == [1, 2] and (ids[:, :20] == 1).all() and (ids[:, 21:] == 2).all()
    # a line of p = 0.3 below the cell threshold: one cell region, one object
    assert np.unique(section_instances(_two_cells(0.3), **kw)).tolist() == [1]
    # a line of 0.45 above a cell threshold of 0.4 seeds both sides; the boundary pairs (0.45, 0.1) have the
    # mean 0.275: kept apart below a merge threshold of 0.2, merged by one of 0.3
    faint = _two_cells(0.45)
    assert np.unique(section_instances(faint, **{**kw, "threshold": 0.4, "merge_threshold": 0.2})).size == 2
    assert np.unique(section_instances(faint, **{**kw, "threshold": 0.4, "merge_threshold": 0.3})).size == 1


def test_small_objects_are_absorbed_and_ids_are_in_raster_order():
    p = _two_cells(0.9)
    p[5:8, 30:33] = 0.9  # a ring-free speck: part of the right cell after flooding
    p[:, 35] = 0.9       # a 20 x 5 sliver at x 36..40 (100 px) cut off by a second membrane
    ids = section_instances(p, threshold=0.5, seed_distance=3, merge_threshold=0.4, min_size=150)
    assert np.unique(ids).tolist() == [1, 2]  # the sliver (100 px + its share of the membrane) went to a neighbour
    big = section_instances(p, threshold=0.5, seed_distance=3, merge_threshold=0.4, min_size=50)
    assert np.unique(big).tolist() == [1, 2, 3] and big[0, 0] == 1 and big[0, 25] == 2 and big[0, 39] == 3
    assert section_instances(np.ones((4, 4), np.float32), threshold=0.5, seed_distance=3, merge_threshold=0.4,
                             min_size=1).max() == 0  # no cell pixel: no object


def test_seed_depth_is_scipys_distance_transform_squared():
    """`_squared_distance` (seung-lab's edt) equals scipy.ndimage.distance_transform_edt squared, exactly, on
    random masks of many shapes and densities, on a hand case, and on a section that is cell everywhere (scipy's
    transform then, so the seeds do not change)."""
    from scipy import ndimage

    from mpfpipe.data.watershed import _squared_distance
    cells = np.ones((4, 5), bool)
    cells[0, 0] = False  # distances to (0, 0): y^2 + x^2
    expect = np.add.outer(np.arange(4) ** 2, np.arange(5) ** 2).astype(np.float64)
    expect[0, 0] = 0
    assert np.array_equal(_squared_distance(cells), expect)
    rng = np.random.default_rng(3)
    for _ in range(300):
        h, w = rng.integers(1, 90, 2)
        m = rng.random((h, w)) < rng.random() ** 0.3
        d2 = ndimage.distance_transform_edt(m) ** 2
        assert np.array_equal(_squared_distance(m), d2 if m.all() else np.rint(d2)), (h, w)
    full = np.ones((6, 7), bool)
    assert np.array_equal(_squared_distance(full), ndimage.distance_transform_edt(full) ** 2)
