"""The learned merge score (data.merge_learn, GALA's learn_agglomerate; data.agglomerate's features and
classifier) on hand-made region graphs whose features, labels and merges are computed by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from mpfpipe.data.agglomerate import FEATURES, N_FEATURES, agglomerate, edge_features, graph
from mpfpipe.data.agglomerate import classifier_array
from mpfpipe.data.merge_learn import (assignment, fit, fit_merge_classifier, learning_data,
                                      section_samples)
from mpfpipe.data.watershed import section_instances
from mpfpipe.errors import DataError

from cellgrid import cell_grid

# A B B B     A|B: one pixel pair, mean (0 + 0.2) / 2 = 0.1          sizes A 1, B 3, C 4
# C C C C     A|C: one pair, (0 + 0.4) / 2 = 0.2; B|C: three pairs, (0.2 + 1) / 2 = 0.6 each
LAB = np.array([[1, 2, 2, 2],
                [3, 3, 3, 3]])
P = np.array([[0.0, 0.2, 0.2, 0.2],
              [0.4, 1.0, 1.0, 1.0]], np.float32)
F = {name: k for k, name in enumerate(FEATURES)}


def _logistic(**coef) -> dict:
    """A classifier record scoring 1 / (1 + exp(-(bias + sum coef * feature))) (centre 0, scale 1)."""
    bias = coef.pop("bias")
    w = [0.0] * N_FEATURES
    for name, v in coef.items():
        w[F[name]] = v
    return {"kind": "logistic", "features": list(FEATURES), "centre": [0.0] * N_FEATURES,
            "scale": [1.0] * N_FEATURES, "coef": w, "bias": bias}


def test_edge_features_by_hand():
    a, b, sums, counts, hist, nsize, nsum = graph(LAB, P)
    x = edge_features(a, b, sums, counts, hist, nsize, nsum)
    assert a.tolist() == [1, 1, 2] and b.tolist() == [2, 3, 3]
    # bins int(v * 64): 0.1 -> 6, 0.2 -> 12, 0.6 -> 38; every percentile of a one-valued boundary is its bin centre
    want = [[0.1, *[6.5 / 64] * 5, 0.0, 0.0, math.log(3), 0.0, 0.2],
            [0.2, *[12.5 / 64] * 5, 0.0, 0.0, math.log(4), 0.0, (0.4 + 3) / 4],
            [0.6, *[38.5 / 64] * 5, math.log(3), math.log(3), math.log(4), 0.2, (0.4 + 3) / 4]]
    assert np.allclose(x, want, atol=1e-6)


def test_the_learned_score_merges_by_hand():
    # score = 1 / (1 + exp(-(10 * mean - 5))): A|B 0.018, A|C 0.047, B|C 0.731. A|B merges first; AB|C is then
    # A|C and B|C together, mean (0.2 + 1.8) / 4 = 0.5: score exactly 0.5, not below a threshold of 0.5
    clf = classifier_array(_logistic(boundary_mean=10.0, bias=-5.0))
    assert agglomerate(LAB, P, 0.5, classifier=clf).tolist() == [[1, 1, 1, 1], [3, 3, 3, 3]]
    assert np.unique(agglomerate(LAB, P, 0.5 + 1e-6, classifier=clf)).tolist() == [1]


def test_the_learned_score_rescores_region_features_after_a_merge():
    # score = m / (m + 2), m the smaller region's size: A|B and A|C 1/3 (m = 1), B|C 3/5. One-shot at 0.5 joins
    # A|B and A|C: one object. Hierarchical: A|B first (the lower edge id of the tie); AB (4 pixels) | C (4):
    # 4 / 6 = 0.667, so C stays apart, though no boundary statistic of AB|C is above 0.5 that was not before
    clf = classifier_array(_logistic(log_min_size=1.0, bias=-math.log(2)))
    assert np.unique(agglomerate(LAB, P, 0.5, classifier=clf, hierarchical=False)).tolist() == [1]
    assert agglomerate(LAB, P, 0.5, classifier=clf).tolist() == [[1, 1, 1, 1], [3, 3, 3, 3]]


def test_assignment_largest_overlap_smallest_on_ties_membrane_not_counted():
    lab = np.array([[1, 1, 1, 2, 2, 3]])
    truth = np.array([[5, 7, 7, 4, 9, 0]])  # region 1: 7 (2 of 3); region 2: tie 4 / 9 -> 4; region 3: membrane only
    assert assignment(lab, truth).tolist() == [0, 7, 4, 0]


TRUTH = np.array([[5, 5, 5, 7],   # A -> 5, B -> 5 (2 of 3), C -> 9: A|B merge (0), A|C and B|C do not (1)
                  [9, 9, 9, 9]])


def test_flat_epoch_every_initial_edge_labelled_by_assignment():
    x, y = section_samples(LAB, P, TRUTH)
    a, b, sums, counts, hist, nsize, nsum = graph(LAB, P)
    assert np.array_equal(x, edge_features(a, b, sums, counts, hist, nsize, nsum))
    assert y.tolist() == [0, 1, 1]


def test_strict_epoch_records_the_popped_edges_and_makes_only_right_merges():
    # ordered by 1 / (1 + exp(-(10 mean - 5))): A|B (label 0) is recorded and merged; AB|C (mean 0.5, 4 pairs;
    # sizes 4 and 4; interiors (0 + 0.6) / 4 = 0.15 and 0.85) is recorded with label 1 and not merged: the end
    x, y = section_samples(LAB, P, TRUTH, classifier_array(_logistic(boundary_mean=10.0, bias=-5.0)))
    assert y.tolist() == [0, 1]
    assert np.allclose(x[0], section_samples(LAB, P, TRUTH)[0][0])
    assert np.allclose(x[1, [F["boundary_mean"], F["log_boundary_length"], F["log_min_size"], F["log_max_size"],
                             F["min_interior_mean"], F["max_interior_mean"]]],
                       [0.5, math.log(4), math.log(4), math.log(4), 0.15, 0.85], atol=1e-6)
    # the bins of AB|C: 12 once, 38 three times: the 5th and 25th percentiles at 12 (pivots 1, 2 -> bin 38 at 2)
    assert np.allclose(x[1, [F["boundary_q5"], F["boundary_q25"]]], [12.5 / 64, 38.5 / 64])


def test_fit_is_deterministic_and_its_numbers_are_the_fitted_regression():
    from sklearn.linear_model import LogisticRegression
    sections = [cell_grid(s) for s in range(3)]
    kw = dict(threshold=0.4, seed_distance=3)
    one = fit_merge_classifier([p for p, _ in sections], [t for _, t in sections], **kw)
    two = fit_merge_classifier([p for p, _ in sections], [t for _, t in sections], **kw)
    assert one == two and one["samples"] > one["different"] > 0
    # the score the merging evaluates (agglomerate.classify) is scikit-learn's predict_proba of class 1
    from mpfpipe.data.agglomerate import classify
    from mpfpipe.data.watershed import fragments
    regions = []
    for p, t in sections:
        q, _, lab = fragments(p, **kw)
        regions.append((lab, q, t))
    x, y = learning_data(regions)
    c, s = np.array(one["centre"]), np.array(one["scale"])
    lr = LogisticRegression(C=1.0, max_iter=2000).fit((x - c) / s, y)
    clf = classifier_array(one)
    mine = np.array([classify(row, clf) for row in x[:50]])
    assert np.allclose(mine, lr.predict_proba((x[:50] - c) / s)[:, 1], atol=1e-9)
    # and it segments: the learned merging joins cut cells back (fewer objects than without merging)
    p, _ = cell_grid(7)
    learned = section_instances(p, **kw, merge_threshold=0.5, min_size=1, merge_score="learned", merge_classifier=one)
    none = section_instances(p, **kw, merge_threshold=0.0, min_size=1)
    assert 0 < learned.max() < none.max()


def test_fit_needs_both_labels():
    with pytest.raises(DataError, match="same label"):
        fit(np.zeros((3, N_FEATURES)), np.zeros(3, np.int8))


@pytest.mark.parametrize("record, match", [
    (None, "needs a fitted merge classifier"),
    ({"kind": "logistic"}, "not a logistic regression"),
    ({**_logistic(bias=0.0), "scale": [0.0] * N_FEATURES}, "not a logistic regression"),
    ({**_logistic(bias=0.0), "coef": [1.0] * (N_FEATURES - 1)}, "not a logistic regression"),
    ({**_logistic(bias=float("nan"))}, "not a logistic regression"),
])
def test_a_learned_score_without_a_proper_classifier_is_refused(record, match):
    with pytest.raises(DataError, match=match) as exc:
        section_instances(P, threshold=0.5, seed_distance=1, merge_threshold=0.5, min_size=1,
                          merge_score="learned", merge_classifier=record)
    assert "\n" not in str(exc.value)
