"""A learned merge score: which touching watershed objects are one cell, learned from ground truth (GALA).

Followed: GALA, Nunez-Iglesias et al. 2013, "Machine learning of hierarchical clustering to segment 2D and 3D
images" (PLOS ONE), github janelia-flyem/gala ``gala/agglo.py``: ``Rag.learn_agglomerate`` with its defaults
(``learn_flat=True, learning_mode='strict', labeling_mode='assignment', priority_mode='active', memory=True,
unique=True, min_num_epochs=2``), that is

- epoch 0 (``learn_flat``): every edge of the initial region graph, no merging;
- epoch 1 (``active``): a classifier fitted on the data so far orders the merge queue, and the section is
  agglomerated to the end (``_learn_agglomerate``): each edge popped is recorded, and in 'strict' mode merged only
  when its label says so, so the regions stay pure and later edges are met as the trained policy meets them;
- labels by 'assignment' (``learn_edge``): each region is assigned the ground-truth object it overlaps most; an
  edge is "do not merge" (1) when its two regions' assignments differ, "merge" (0) otherwise;
- the data of all epochs together, duplicate rows removed (``memory``, ``unique``), fit the final classifier.

Two differences, both so the score can live in the model file as numbers and run in Numba inside the merging
loop (`agglomerate._merge`): the classifier is a logistic regression (GALA's default is a random forest), and
the features (`agglomerate.FEATURES`: boundary mean and percentiles from its histogram, boundary length, the two
regions' sizes and interior mean probabilities; GALA's moments and histograms of the boundary and of the two
regions) are made only of statistics that add when regions merge. Ground truth: each pixel's object (0 =
membrane, not counted, as in the ISBI evaluation); a region covering no object pixel teaches nothing.
scikit-learn fits the classifier (only here, only at fit time: the ``learn`` extra); segmenting needs only the
numbers it gives.
"""
from __future__ import annotations

import numpy as np

from ..errors import DataError
from .agglomerate import FEATURES, LEARNED, N_FEATURES, _merge, classifier_array, edge_features, graph

EPOCHS = 2  # GALA's min_num_epochs: the flat epoch and one active epoch


def assignment(lab: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The ground-truth object (truth id > 0) each id 0..max of ``lab`` overlaps most (ties: the smallest id;
    0 when it covers no object pixel)."""
    n = int(lab.max()) + 1
    m = truth > 0
    la, tb = lab[m].astype(np.int64), truth[m].astype(np.int64)
    out = np.zeros(n, np.int64)
    if not la.size:
        return out
    base = int(tb.max()) + 1
    keys, counts = np.unique(la * base + tb, return_counts=True)
    ids, objs = keys // base, keys % base
    order = np.lexsort((objs, -counts, ids))  # per region: the largest overlap first, then the smallest object
    first = order[np.r_[True, ids[order][1:] != ids[order][:-1]]]
    out[ids[first]] = objs[first]
    return out


def section_samples(lab: np.ndarray, p: np.ndarray, truth: np.ndarray, classifier: np.ndarray | None = None):
    """(features, labels) of one section's regions ``lab`` (ids > 0): every initial edge without a
    ``classifier`` (the flat epoch), else the edges met by strict agglomeration ordered by it."""
    a, b, sums, counts, hist, nsize, nsum = graph(lab, p)
    gt = assignment(lab, truth)
    if not a.size:
        return np.zeros((0, N_FEATURES)), np.zeros(0, np.int8)
    if classifier is None:
        keep = (gt[a] != 0) & (gt[b] != 0)
        return edge_features(a, b, sums, counts, hist, nsize, nsum)[keep], (gt[a] != gt[b])[keep].astype(np.int8)
    _, x, y = _merge(int(lab.max()) + 1, a, b, sums, counts, hist, nsize, nsum, LEARNED,
                     np.asarray(classifier, np.float64), np.inf, gt)
    return x, y


def fit(x: np.ndarray, y: np.ndarray) -> dict:
    """The logistic regression of labels y (1 = different objects) on the features x, as plain numbers:
    {"kind", "features", "centre", "scale", "coef", "bias", "samples", "different"} (features standardised by
    their mean and standard deviation; scikit-learn's LogisticRegression, L2, C = 1, lbfgs: deterministic)."""
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        raise DataError("fitting the learned merge score needs scikit-learn: pip install 'mpfpipe[learn]'") from None
    if len(np.unique(y)) < 2:
        raise DataError(f"cannot fit the merge score: all {len(y)} training edges have the same label "
                        "(the truth sections need objects that touch and objects that were cut)")
    centre = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    lr = LogisticRegression(C=1.0, max_iter=2000).fit((x - centre) / scale, y)
    return {"kind": "logistic", "features": list(FEATURES), "centre": centre.tolist(), "scale": scale.tolist(),
            "coef": lr.coef_[0].tolist(), "bias": float(lr.intercept_[0]), "samples": int(len(y)),
            "different": int(np.sum(y))}


def learning_data(sections: list, epochs: int = EPOCHS):
    """(features, labels) of GALA's epochs (module doc) over ``sections``: (regions, probability, truth) each."""
    xs, ys = [], []
    for epoch in range(epochs):
        clf = None if epoch == 0 else classifier_array(fit(*_unique(xs, ys)))
        for lab, p, truth in sections:
            x, y = section_samples(lab, p, truth, clf)
            xs.append(x)
            ys.append(y)
    return _unique(xs, ys)


def _unique(xs: list, ys: list):
    rows = np.unique(np.column_stack([np.concatenate(xs), np.concatenate(ys)]), axis=0)  # sorted: any order in
    return rows[:, :-1], rows[:, -1].astype(np.int8)


def fit_merge_classifier(prob_slices, truth_segs, *, threshold: float, seed_distance: int, smooth: float = 0.0,
                         epochs: int = EPOCHS) -> dict:
    """The classifier record (`fit`) learned on sections (their membrane probability, their truth objects: ids
    > 0, 0 = membrane) cut into regions by `watershed.fragments` with these parameters."""
    from .watershed import fragments
    sections = []
    for p, t in zip(prob_slices, truth_segs):
        q, _, lab = fragments(p, threshold=threshold, seed_distance=seed_distance, smooth=smooth)
        if lab is not None:
            sections.append((lab, q, np.asarray(t)))
    if not sections:
        raise DataError("cannot fit the merge score: no section has a cell pixel")
    x, y = learning_data(sections, epochs)
    return {**fit(x, y), "epochs": epochs, "fragments": {"threshold": threshold, "seed_distance": seed_distance,
                                                         "smooth": smooth}}
