"""The ISBI 2012 challenge's ranking metrics: foreground-restricted Rand and information-theoretic scores after
border thinning, and the variation of information (Arganda-Carreras et al. 2015, Front. Neuroanat. 9:142, and the
challenge's Fiji script, which ranks by V_rand and V_info after thinning rather than by pixel error).

For each threshold t: the predicted membrane is ``prob > t``; the membrane maps of the prediction and of the truth
are **thinned** to one-pixel-wide curves (scikit-image's ``skeletonize``, Zhang & Suen's thinning; the map is
extended by replicating its edge first, so that a membrane reaching the image edge still separates its two sides
there), and the **segments** are the 4-connected components of the non-membrane pixels. Only pixels inside a
truth segment count (the truth's thinned membrane and its unlabelled pixels are excluded); a pixel that the
prediction calls membrane is a segment of its own (a singleton), as in the Fiji code. With n_ij the joint
counts, a_i the truth segment sizes and b_j the predicted ones (singletons included), over the n counted pixels:

- Rand: split = sum n_ij^2 / sum a_i^2, merge = sum n_ij^2 / sum b_j^2, V_rand = 2 sum n_ij^2 / (sum a^2 + sum b^2);
- information (entropies in bits; S the prediction, T the truth): I(S;T) = H(S) + H(T) - H(S,T),
  split = I / H(S), merge = I / H(T), V_info = 2 I / (H(S) + H(T));
- variation of information: split = H(S|T) (over-segmentation), merge = H(T|S) (under-segmentation), in bits
  (as scikit-image).

Scores are computed per slice and averaged over slices (as `metrics.vrand_sweep`); V_rand and V_info are the
maxima over the thresholds (each at its own best threshold); VOI is given at V_info's best threshold.
"""
from __future__ import annotations

import numpy as np

from .metrics import DEFAULT_THRESHOLDS, segments

EDGE_MARGIN = 32  # pixels of edge replication around a membrane map before thinning (see `thin`)


def thin(membrane: np.ndarray) -> np.ndarray:
    """A boolean membrane map thinned to one-pixel-wide curves (topology kept: no membrane is cut)."""
    from skimage.morphology import skeletonize

    # Replicating the edge continues a membrane that reaches the image edge beyond it, so that thinning does not
    # shorten its end there (Zhang-Suen eats ~half a curve's width at each end) and join the segments it separates.
    m = EDGE_MARGIN
    padded = np.pad(np.asarray(membrane, dtype=bool), m, mode="edge")
    return skeletonize(padded)[m:-m, m:-m]


def thinned_segments(membrane: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
    """Segments (4-connected, 1..N; 0 = thinned membrane or ``exclude``) of a membrane map after thinning."""
    seg = segments(~thin(membrane))
    if exclude is not None:
        seg[np.asarray(exclude, dtype=bool)] = 0
    return seg


def _table(truth_seg: np.ndarray, pred_seg: np.ndarray):
    """Joint counts over the truth's segments: (counts of (i, j>0) pairs, counts a_i, counts b_j (j>0),
    number of predicted-membrane pixels inside truth segments, n)."""
    fg = truth_seg > 0
    a, b = truth_seg[fg].astype(np.int64), pred_seg[fg].astype(np.int64)
    nb = int(b.max()) + 1 if b.size else 1
    _, nij = np.unique(a[b > 0] * nb + b[b > 0], return_counts=True)
    ai = np.bincount(a)[1:]
    bj = np.bincount(b[b > 0])[1:] if (b > 0).any() else np.zeros(0, np.int64)
    return nij.astype(np.float64), ai[ai > 0].astype(np.float64), bj[bj > 0].astype(np.float64), \
        float(np.count_nonzero(b == 0)), float(a.size)


def _entropy(counts: np.ndarray, n: float) -> float:
    p = counts / n
    return float(-(p * np.log2(p)).sum())


def scores(truth_seg: np.ndarray, pred_seg: np.ndarray) -> dict:
    """Rand, information and VOI scores of one slice's segments (see the module docstring); NaN without truth
    segments."""
    nij, ai, bj, singles, n = _table(truth_seg, pred_seg)
    if n == 0:
        return {k: float("nan") for k in ("v_rand", "rand_split", "rand_merge", "v_info", "info_split",
                                          "info_merge", "voi_split", "voi_merge")}
    sum_ab = float((nij ** 2).sum()) + singles
    sum_a = float((ai ** 2).sum())
    sum_b = float((bj ** 2).sum()) + singles
    # a singleton has probability 1/n: it adds (1/n) log2 n to H(S) and to H(S,T)
    h_single = singles / n * np.log2(n)
    h_t = _entropy(ai, n)
    h_s = _entropy(bj, n) + h_single
    h_st = _entropy(nij, n) + h_single
    mi = h_s + h_t - h_st

    def ratio(x, y):  # a single segment on both sides: nothing to split or merge
        return x / y if y > 0 else 1.0

    return {"v_rand": 2 * sum_ab / (sum_a + sum_b), "rand_split": sum_ab / sum_a, "rand_merge": sum_ab / sum_b,
            "v_info": ratio(2 * mi, h_s + h_t), "info_split": ratio(mi, h_s), "info_merge": ratio(mi, h_t),
            "voi_split": max(h_st - h_t, 0.0), "voi_merge": max(h_st - h_s, 0.0)}


def truth_segments(truth: np.ndarray, *, positive: int = 1, ignore_index: int = 255) -> np.ndarray:
    """Thinned truth segments of one label slice: membrane = ``positive``; unlabelled pixels excluded."""
    truth = np.asarray(truth)
    return thinned_segments(truth == positive, exclude=truth == ignore_index)


def thinned_sweep(prob_slices, truth_slices, *, positive: int = 1, ignore_index: int = 255,
                  thresholds=DEFAULT_THRESHOLDS) -> tuple[dict, dict]:
    """(report["isbi2012"], report["voi"]) over the slices: the score curve over ``thresholds``, the maximal
    V_rand and V_info after thinning with their thresholds, and VOI split / merge at V_info's threshold."""
    truth_segs = [truth_segments(t, positive=positive, ignore_index=ignore_index) for t in truth_slices]
    curve = []
    for th in thresholds:
        per = [scores(ts, thinned_segments(np.asarray(p) > th)) for p, ts in zip(prob_slices, truth_segs)]
        row = {"threshold": float(th)}
        for key in per[0] if per else ():
            vals = [s[key] for s in per if np.isfinite(s[key])]
            row[key] = float(np.mean(vals)) if vals else float("nan")
        curve.append(row)

    def best(key):
        finite = [c for c in curve if np.isfinite(c.get(key, np.nan))]
        return max(finite, key=lambda c: c[key]) if finite else None

    br, bi = best("v_rand"), best("v_info")
    nan = float("nan")
    isbi = {"v_rand_thinned": br["v_rand"] if br else nan, "v_rand_threshold": br["threshold"] if br else nan,
            "rand_split": br["rand_split"] if br else nan, "rand_merge": br["rand_merge"] if br else nan,
            "v_info_thinned": bi["v_info"] if bi else nan, "v_info_threshold": bi["threshold"] if bi else nan,
            "info_split": bi["info_split"] if bi else nan, "info_merge": bi["info_merge"] if bi else nan,
            "thinning": f"skeletonize (Zhang-Suen) of both membrane maps, extended by {EDGE_MARGIN} edge pixels",
            "segments": "4-connected components of non-membrane; predicted membrane pixels are singletons",
            "foreground": "truth segments only (truth membrane and unlabelled pixels excluded)",
            "averaged_over": "slices", "curve": curve}
    voi = {"split": bi["voi_split"] if bi else nan, "merge": bi["voi_merge"] if bi else nan,
           "threshold": bi["threshold"] if bi else nan, "unit": "bits",
           "definition": "split = H(prediction | truth), merge = H(truth | prediction), after thinning, on "
                         "the truth's segments; at the threshold of the best V_info"}
    return isbi, voi
