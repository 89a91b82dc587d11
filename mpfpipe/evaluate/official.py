"""The ISBI 2012 challenge's ranking scores exactly as its leaderboard computes them: the maximal foreground-restricted
Rand score and information-theoretic score after border thinning, V_rand and V_info (Arganda-Carreras et al. 2015,
Front. Neuroanat. 9:142), implemented from the evaluation's own code, Fiji's Trainable Segmentation (github
fiji/Trainable_Segmentation, as called by the challenge's "Segmentation evaluation after border thinning" script,
``getMaximalVRandAfterThinning(0.0, 1.0, 0.1, true)`` and ``getMaximalVInfoAfterThinning(0.0, 1.0, 0.1)``):

- ``metrics/RandError.java``: ``getForegroundRestrictedRandAfterThinningStats`` (threshold loop, per-slice mean of
  the F-score), ``getForegroundRestrictedRandAfterThinningStatsN2`` (one slice) and
  ``getForegroundRestrictedRandIndexStatsN2`` (the counts); ``ClassificationStatistics`` (precision 1 when there is
  no false positive, recall 1 when there is no false negative, F = 0 when P + R is not > 0);
- ``metrics/VariationOfInformation.java``: ``getForegroundRestrictedScoresAfterThinning``,
  ``foregroundRestrictedScoreAfterThinningN2`` and ``foregroundRestrictedFscore``;
- ``utils/WatershedTransform2D.java``: the thinning (`flooding`).

Per slice and threshold ``th``: the truth is **not thinned**: its segments are the 4-connected components of its
cell (non-membrane) pixels, and only those pixels are counted (n of them). The proposal in the challenge's
convention is a cell probability (white = cell); pixels with proposal > th are cells, the rest border, and **only
the proposal is thinned**: the border is flooded from the cell regions (4-connected watershed), leaving one-pixel
dams; a dam pixel inside a truth segment counts as a segment of its own. With p_ij the joint fractions over the n
pixels (j = 0 the dams), a_i the truth segments', b_j (j >= 1) the proposal's and p0 = sum_i p_i0:

- Rand: sum_A = sum a_i^2, sum_B = sum b_j^2 + p0 / n, sum_AB = sum_{j>=1} p_ij^2 + p0 / n; precision =
  sum_AB / sum_B (= Rand merge), recall = sum_AB / sum_A (= Rand split), F = 2PR / (P + R); no truth pixel scores 0;
- information (any log base): H(A), H(B) and H(A, B) with each dam pixel its own segment; precision =
  I / H(A) (= information merge), recall = I / H(B) (= information split), F = 2PR / (P + R), where H(A) = 0 gives
  P = 0, R = 1 and H(B) = 0 gives P = 1, R = 0: a slice where either side is one segment scores 0.

Thresholds 0.0, 0.1, ... accumulated in double precision while <= 1.0 (11 of them, the last 0.9999999999999999);
each score's F is averaged over the slices, and V_rand and V_info are the maxima over the thresholds, each at its
own threshold (first maximum; a NaN mean never wins).

Our predictions are membrane probabilities, so the proposal is ``1 - p`` in float32 (what a submission stores):
at challenge threshold th the membrane is ``p >= 1 - th``. Truth pixels of the ``ignore_index`` are left out like
membrane (the challenge's labels have none). An instance image (`instance_proposal`) is scored as the challenge
would score its boundary map: a binary proposal, the script's "binary proposal" mode (threshold 0.0 only).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .flooding import thin_borders


def _thresholds(lo: float = 0.0, hi: float = 1.0, step: float = 0.1) -> tuple[float, ...]:
    out, th = [], lo
    while th <= hi:  # accumulated as the Java's ``for (th = min; th <= max; th += step)``
        out.append(th)
        th += step
    return tuple(out)


THRESHOLDS = _thresholds()
BINARY_THRESHOLDS = (0.0,)


def _table(truth_seg: np.ndarray, prop_seg: np.ndarray):
    """Joint fractions over the truth's segments: (p_ij for j >= 1, a_i, b_j (j >= 1), p0, n)."""
    fg = truth_seg > 0
    n = float(np.count_nonzero(fg))
    a, b = truth_seg[fg].astype(np.int64), prop_seg[fg].astype(np.int64)
    on = b > 0
    nb = int(b.max()) + 1 if b.size else 1
    _, pij = np.unique(a[on] * nb + b[on], return_counts=True)
    ai = np.bincount(a)[1:]
    bj = np.bincount(b[on])[1:] if on.any() else np.zeros(0, np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):  # n = 0 gives NaN as in the Java
        return (pij / n, ai[ai > 0] / n, bj[bj > 0] / n, np.float64(np.count_nonzero(~on)) / n, n)


def _f(prec: float, rec: float) -> float:
    return 2.0 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0


def rand_stats(truth_seg: np.ndarray, prop_seg: np.ndarray) -> dict:
    """``getForegroundRestrictedRandIndexStatsN2`` of one slice: F (V_rand), precision (merge), recall (split)."""
    pij, ai, bj, p0, n = _table(truth_seg, prop_seg)
    sum_a2 = float((ai * ai).sum())
    sum_b2 = float((bj * bj).sum()) + p0 / n if n else float("nan")
    sum_ab2 = float((pij * pij).sum()) + p0 / n if n else float("nan")
    n2 = n * n
    tp = n2 * sum_ab2
    fp, fn = n2 * sum_b2 - tp, n2 * sum_a2 - tp
    prec = 1.0 if fp == 0 else tp / (tp + fp)
    rec = 1.0 if fn == 0 else tp / (tp + fn)
    return {"v_rand": _f(prec, rec), "rand_merge": prec, "rand_split": rec}


def info_stats(truth_seg: np.ndarray, prop_seg: np.ndarray) -> dict:
    """``foregroundRestrictedFscore`` of one slice (natural logs): F (V_info), precision (merge), recall (split),
    and the variation of information H(B|A) (split) and H(A|B) (merge) in bits."""
    pij, ai, bj, p0, n = _table(truth_seg, prop_seg)
    if n == 0:  # the Java: H(A) = 0 (P = 0, R = 1), H(B) = NaN (0 * log 0), so F = 0
        nan = float("nan")
        return {"v_info": 0.0, "info_merge": 0.0, "info_split": 1.0, "voi_split": nan, "voi_merge": nan}
    log_n = np.log(n)
    sum_a = float((ai * np.log(ai)).sum())
    sum_b = float((bj * np.log(bj)).sum()) - p0 * log_n
    sum_ab = float((pij * np.log(pij)).sum()) - p0 * log_n
    ha, hb = -sum_a, -sum_b
    hab, hba = sum_b - sum_ab, sum_a - sum_ab  # H(A|B), H(B|A)
    with np.errstate(invalid="ignore", divide="ignore"):
        prec, rec = np.float64(ha - hab) / ha, np.float64(hb - hba) / hb
    if ha == 0:
        prec, rec = 0.0, 1.0
    if hb == 0:
        prec, rec = 1.0, 0.0
    with np.errstate(invalid="ignore"):
        f = float(np.float64(2.0 * prec * rec) / np.float64(prec + rec))  # 0 / 0 = NaN as in the Java
    return {"v_info": f, "info_merge": float(prec), "info_split": float(rec),
            "voi_split": max(hba, 0.0) / np.log(2), "voi_merge": max(hab, 0.0) / np.log(2)}


def truth_segments(truth: np.ndarray, *, positive: int = 1, ignore_index: int = 255) -> np.ndarray:
    """The truth's segments: 4-connected components of its non-membrane, labelled pixels (0 elsewhere)."""
    truth = np.asarray(truth)
    return ndimage.label((truth != positive) & (truth != ignore_index))[0]


def proposal(prob: np.ndarray) -> np.ndarray:
    """The challenge's proposal (cell probability, float32) of a membrane probability map."""
    return (np.float32(1.0) - np.asarray(prob, dtype=np.float32)).astype(np.float32)


def instance_proposal(instances: np.ndarray) -> np.ndarray:
    """A binary proposal (1 = cell, 0 = border) of an instance image: 0 on background and on one side of every
    boundary between two ids that touch (the pixel whose right or lower neighbour has another non-zero id)."""
    ids = np.asarray(instances)
    border = ids == 0
    border[:, :-1] |= (ids[:, :-1] != ids[:, 1:]) & (ids[:, 1:] != 0)  # next to background: that is the border
    border[:-1, :] |= (ids[:-1, :] != ids[1:, :]) & (ids[1:, :] != 0)
    return (~border).astype(np.float32)


def slice_scores(truth_seg: np.ndarray, prop: np.ndarray, th: float) -> dict:
    """Both scores of one slice at challenge threshold ``th`` (cells where ``prop > th``)."""
    seg = thin_borders(np.asarray(prop, dtype=np.float64) > th)
    return {**rand_stats(truth_seg, seg), **info_stats(truth_seg, seg)}


def sweep(proposals, truth_segs, *, thresholds=THRESHOLDS, per_slice: list | None = None) -> tuple[dict, dict]:
    """(report["isbi2012"], report["voi"]): the per-slice-mean curve over ``thresholds``, the maximal V_rand and
    V_info (each at its own threshold, as ``getMaximalVRandAfterThinning`` / ``getMaximalVInfoAfterThinning``),
    and the VOI at V_info's threshold. ``per_slice``: a list that receives each threshold's slice scores, as
    (threshold, [`slice_scores` of each slice])."""
    curve = []
    for th in thresholds:
        per = [slice_scores(ts, p, th) for p, ts in zip(proposals, truth_segs)]
        if per_slice is not None:
            per_slice.append((float(th), per))
        row = {"threshold": float(th), "membrane_threshold": float(1.0 - th)}
        for key in per[0] if per else ():
            row[key] = float(np.mean([s[key] for s in per]))  # a NaN slice makes the mean NaN, as in the Java
        curve.append(row)

    def best(key):
        top, at = 0.0, None
        for c in curve:
            if c.get(key, 0.0) > top:  # strict: the first maximum; NaN never wins
                top, at = c[key], c
        return at

    br, bi = best("v_rand"), best("v_info")
    nan = float("nan")

    def pick(row, k, default=0.0):
        return row[k] if row else default

    isbi = {"v_rand_thinned": pick(br, "v_rand"), "v_rand_threshold": pick(br, "threshold", nan),
            "rand_split": pick(br, "rand_split", nan), "rand_merge": pick(br, "rand_merge", nan),
            "v_info_thinned": pick(bi, "v_info"), "v_info_threshold": pick(bi, "threshold", nan),
            "info_split": pick(bi, "info_split", nan), "info_merge": pick(bi, "info_merge", nan),
            "threshold_convention": "challenge proposal = 1 - membrane probability; cell where proposal > "
                                    "threshold, i.e. membrane where p >= membrane_threshold = 1 - threshold",
            "definition": "official ISBI 2012 (Fiji Trainable_Segmentation RandError / VariationOfInformation "
                          "after WatershedTransform2D border thinning of the proposal only)",
            "averaged_over": "slices", "curve": curve}
    voi = {"split": pick(bi, "voi_split", nan), "merge": pick(bi, "voi_merge", nan),
           "threshold": pick(bi, "threshold", nan), "unit": "bits",
           "definition": "split = H(proposal | truth), merge = H(truth | proposal) on the truth's cell pixels, "
                         "thinned proposal (dam pixels singletons); at the threshold of the best V_info"}
    return isbi, voi


def thinned_sweep(prob_slices, truth_slices, *, positive: int = 1, ignore_index: int = 255) -> tuple[dict, dict]:
    """`sweep` of membrane probability slices against class-label truth slices (membrane = ``positive``)."""
    truth_segs = [truth_segments(t, positive=positive, ignore_index=ignore_index) for t in truth_slices]
    return sweep([proposal(p) for p in prob_slices], truth_segs)


def instance_scores(instance_slices, truth_segs, *, sections: bool = False) -> dict:
    """V_rand and V_info after thinning of instance slices, as the challenge scores a binary proposal. With
    ``sections``, also each slice's own scores (``"sections"``: v_rand_thinned, its rand_split / rand_merge, and
    v_info_thinned), whose means the two scores are (a binary proposal has one threshold): they show which
    sections hold the mean down, and whether by splits (low rand_split) or merges (low rand_merge)."""
    per: list = []
    isbi, _ = sweep([instance_proposal(s) for s in instance_slices], truth_segs, thresholds=BINARY_THRESHOLDS,
                    per_slice=per)
    out = {"v_rand_thinned": isbi["v_rand_thinned"], "v_info_thinned": isbi["v_info_thinned"]}
    if sections:
        out["sections"] = [{"v_rand_thinned": q["v_rand"], "rand_split": q["rand_split"],
                            "rand_merge": q["rand_merge"], "v_info_thinned": q["v_info"]} for q in per[0][1]]
    return out
