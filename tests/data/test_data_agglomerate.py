"""Hierarchical agglomeration (data.agglomerate, after waterz's IterativeRegionMerging) on hand-made label images
whose boundary scores are computed by hand: re-scoring after a merge, the histogram quantile, one-shot merging."""
from __future__ import annotations

import numpy as np
import pytest

from mpfpipe.data.agglomerate import BINS, agglomerate, boundary_stats
from mpfpipe.data.watershed import section_instances

# A B B B     A|B: one pixel pair, mean (0 + 0.2) / 2 = 0.1
# C C C C     A|C: one pair, (0 + 0.4) / 2 = 0.2; B|C: three pairs, (0.2 + 1) / 2 = 0.6 each
LAB = np.array([[1, 2, 2, 2],
                [3, 3, 3, 3]])
P = np.array([[0.0, 0.2, 0.2, 0.2],
              [0.4, 1.0, 1.0, 1.0]], np.float32)


def test_boundary_statistics_by_hand():
    a, b, sums, counts, hist = boundary_stats(LAB, P, histograms=True)
    assert a.tolist() == [1, 1, 2] and b.tolist() == [2, 3, 3]
    assert counts.tolist() == [1, 1, 3]
    assert np.allclose(sums / counts, [0.1, 0.2, 0.6])
    # waterz's discretize: bin int(v * 64): 0.1 -> 6, 0.2 -> 12, 0.6 -> 38 (three times)
    assert [np.flatnonzero(h).tolist() for h in hist] == [[6], [12], [38]] and hist[2, 38] == 3
    assert hist.shape == (3, BINS)


def test_hierarchical_rescores_the_merged_boundary_one_shot_does_not():
    # one-shot at 0.45: A|B (0.1) and A|C (0.2) are both below, so A, B and C become one object
    once = agglomerate(LAB, P, 0.45, hierarchical=False)
    assert np.unique(once).tolist() == [1]
    # hierarchical: A|B first (0.1); the boundary of AB with C is then A|C and B|C together,
    # (0.2 + 3 * 0.6) / 4 = 0.5 >= 0.45: C stays apart. The merged object keeps the smallest id, 1.
    hier = agglomerate(LAB, P, 0.45)
    assert hier.tolist() == [[1, 1, 1, 1], [3, 3, 3, 3]]
    # above 0.5 everything joins; below 0.1 nothing does
    assert np.unique(agglomerate(LAB, P, 0.51)).tolist() == [1]
    assert np.array_equal(agglomerate(LAB, P, 0.1), LAB)


def _two_regions(values):
    """Two regions side by side, one row per value: the pair across the boundary of row r has mean values[r]."""
    n = len(values)
    lab = np.ones((n, 2), np.int64)
    lab[:, 1] = 2
    p = np.repeat(np.asarray(values, np.float32)[:, None], 2, axis=1)
    return lab, p


@pytest.mark.parametrize("q, score", [(25, 19.5 / 64), (50, 44.5 / 64), (0, 6.5 / 64), (75, 57.5 / 64),
                                      (100, 57.5 / 64)])
def test_quantile_score_from_the_histogram(q, score):
    # values 0.1, 0.3, 0.7, 0.9 -> bins 6, 19, 44, 57; pivot q * 4 // 100 + 1 (1-based; at most 4), the bin centre
    lab, p = _two_regions([0.1, 0.3, 0.7, 0.9])
    assert np.unique(agglomerate(lab, p, score, quantile=q)).size == 2  # score < threshold merges: not equal
    assert np.unique(agglomerate(lab, p, score + 1e-6, quantile=q)).size == 1
    assert np.unique(agglomerate(lab, p, score, quantile=q, hierarchical=False)).size == 2
    assert np.unique(agglomerate(lab, p, score + 1e-6, quantile=q, hierarchical=False)).size == 1


def test_a_gap_in_a_membrane_joins_by_a_low_quantile_not_by_the_mean():
    # a 20-pixel boundary, membrane (0.9) except a 3-pixel gap (0.05): mean 0.7725, 5th percentile in the gap
    values = [0.9] * 17 + [0.05] * 3
    lab, p = _two_regions(values)
    assert np.unique(agglomerate(lab, p, 0.15)).size == 2
    assert np.unique(agglomerate(lab, p, 0.15, quantile=5)).size == 1


def test_section_instances_options():
    p = np.full((20, 41), 0.1, np.float32)
    p[:, 20] = 0.9
    kw = dict(threshold=0.5, seed_distance=3, merge_threshold=0.4, min_size=10)
    # smoothed (sigma 1) the membrane column peaks at 0.1 + 0.8 * 0.399 = 0.42 and its neighbours are 0.29: cell
    # below 0.4, and the boundary pairs' mean 0.355 (bin 22, 22.5 / 64 = 0.352) keeps them apart at 0.3
    for extra in ({}, {"agglomeration": "one-shot"}, {"merge_score": "mean"},
                  {"smooth": 1.0, "threshold": 0.4, "merge_threshold": 0.3}):
        ids = section_instances(p, **{**kw, **extra})
        assert np.unique(ids).tolist() == [1, 2] and (ids[:, :20] == 1).all() and (ids[:, 21:] == 2).all()
    p[8:11, 20] = 0.1  # a 3-pixel gap: the 5th percentile of the boundary is in it, the mean is not
    assert np.unique(section_instances(p, **kw)).tolist() == [1]
    assert np.unique(section_instances(p, **kw, merge_score="mean")).tolist() == [1, 2]
