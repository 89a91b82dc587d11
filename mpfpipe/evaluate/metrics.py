"""Evaluation metrics (numpy/scipy, no I/O): pixel error, IoU/Dice, foreground-restricted Rand score and the
F-score pixel error (ISBI 2012),
the paper's balanced per-pixel error, and image-level defect detection with a count threshold.

Conventions: ``labels`` / ``truth`` are integer class ids with ``ignore_index`` for unlabeled pixels; ``prob`` is the
probability of the *positive* class (membrane / defect) in [0, 1]; a pixel is predicted positive when
``prob > threshold``.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

FOUR = ndimage.generate_binary_structure(2, 1)  # 4-connectivity
DEFAULT_THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(11))  # 0.0, 0.1, ..., 1.0 as in the ISBI script


def confusion_matrix(pred: np.ndarray, truth: np.ndarray, n_classes: int, ignore_index: int = 255) -> np.ndarray:
    """(K, K) int64 counts, rows = truth class, columns = predicted class, over non-ignored pixels."""
    pred, truth = np.asarray(pred).ravel(), np.asarray(truth).ravel()
    valid = (truth != ignore_index) & (truth < n_classes)
    idx = truth[valid].astype(np.int64) * n_classes + np.clip(pred[valid].astype(np.int64), 0, n_classes - 1)
    return np.bincount(idx, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def pixel_error(conf: np.ndarray) -> float:
    """Fraction of non-ignored pixels whose predicted class differs from the truth."""
    total = conf.sum()
    return float(1.0 - np.trace(conf) / total) if total else float("nan")


def iou_dice(conf: np.ndarray) -> tuple[list, list]:
    """Per-class IoU = TP / (TP + FP + FN) and Dice = 2 TP / (2 TP + FP + FN) (NaN for a class absent from both)."""
    tp = np.diag(conf).astype(np.float64)
    fp = conf.sum(0) - tp
    fn = conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / (tp + fp + fn)
        dice = 2 * tp / (2 * tp + fp + fn)
    return [float(v) for v in iou], [float(v) for v in dice]


def _contingency(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse contingency table of two label images: (row ids, column ids, counts) of the pairs present."""
    nb = int(b.max()) + 1 if b.size else 1
    keys, counts = np.unique(a.astype(np.int64) * nb + b.astype(np.int64), return_counts=True)
    return keys // nb, keys % nb, counts.astype(np.float64)


def rand_fscore(truth_segments: np.ndarray, pred_segments: np.ndarray) -> dict:
    """Foreground-restricted Rand scores of one image, as in the ISBI 2012 challenge (Arganda-Carreras et al. 2015,
    Fiji's RandError with N^2 normalisation): only pixels inside a truth segment (label > 0) count; a pixel that
    the prediction calls boundary (label 0) is a segment of its own. With p_ij the joint counts, a_i the truth
    segment sizes and b_j the predicted segment sizes (all restricted to truth foreground):
    split score (recall) = sum p_ij^2 / sum a_i^2, merge score (precision) = sum p_ij^2 / sum b_j^2, and
    V_rand = their harmonic mean = 2 sum p_ij^2 / (sum a_i^2 + sum b_j^2). Rand error = 1 - V_rand."""
    fg = truth_segments > 0
    a, b = truth_segments[fg], pred_segments[fg]
    if a.size == 0:
        return {"v_rand": float("nan"), "split": float("nan"), "merge": float("nan")}
    rows, cols, p = _contingency(a, b)
    singles = p[cols == 0].sum()  # predicted-boundary pixels inside truth segments: singletons
    sum_ab = float((p[cols > 0] ** 2).sum() + singles)
    sum_a = float((np.bincount(a.astype(np.int64)).astype(np.float64) ** 2).sum())
    bj = np.bincount(b.astype(np.int64)).astype(np.float64)
    sum_b = float((bj[1:] ** 2).sum() + singles)
    split, merge = sum_ab / sum_a, sum_ab / sum_b
    return {"v_rand": 2 * sum_ab / (sum_a + sum_b), "split": split, "merge": merge}


def segments(foreground: np.ndarray) -> np.ndarray:
    """4-connected components of a 2D boolean foreground (0 = background)."""
    lab, _ = ndimage.label(foreground, structure=FOUR)
    return lab


def vrand_sweep(prob_slices, truth_slices, *, positive: int = 1, ignore_index: int = 255,
                thresholds=DEFAULT_THRESHOLDS) -> dict:
    """Foreground-restricted V_rand over thresholds: for each threshold t the prediction's segments are the
    4-connected components of ``prob <= t`` (not membrane), the truth's those of its non-``positive``, non-ignored
    pixels; V_rand is computed per slice and averaged over slices (as the ISBI script does). Returns the curve,
    the best threshold and ``rand_error`` = 1 - best V_rand."""
    truth_segs = [segments((t != positive) & (t != ignore_index)) for t in truth_slices]
    curve = []
    for th in thresholds:
        per = [rand_fscore(ts, segments(p <= th)) for p, ts in zip(prob_slices, truth_segs)]
        vals = [s["v_rand"] for s in per if np.isfinite(s["v_rand"])]
        curve.append({"threshold": float(th), "v_rand": float(np.mean(vals)) if vals else float("nan"),
                      "split": float(np.mean([s["split"] for s in per if np.isfinite(s["split"])] or [np.nan])),
                      "merge": float(np.mean([s["merge"] for s in per if np.isfinite(s["merge"])] or [np.nan]))})
    finite = [c for c in curve if np.isfinite(c["v_rand"])]
    best = max(finite, key=lambda c: c["v_rand"]) if finite else {"threshold": float("nan"), "v_rand": float("nan")}
    return {"best_threshold": best["threshold"], "v_rand": best["v_rand"], "rand_error": 1.0 - best["v_rand"],
            "curve": curve, "connectivity": 4, "averaged_over": "slices"}


def fscore_sweep(prob, truth, *, positive: int = 1, ignore_index: int = 255,
                 thresholds=DEFAULT_THRESHOLDS) -> dict:
    """The ISBI 2012 challenge's "pixel error" = 1 - the maximal F-score of pixel similarity over thresholds
    (Arganda-Carreras et al. 2015; Fiji's PixelError, whose positives are the label > 0 pixels: in ISBI labels the
    non-membrane ones). For each threshold t a pixel is predicted non-``positive`` when ``prob <= t`` (as in
    `vrand_sweep`); the curve holds that class's precision, recall and F-score, and also the plain fraction of
    misclassified pixels at t. Binary problems only. Note that both maxima are taken over thresholds on the
    evaluated images themselves, as the challenge did."""
    prob, truth = np.asarray(prob).ravel(), np.asarray(truth).ravel()
    valid = truth != ignore_index
    p, neg = prob[valid], truth[valid] != positive  # neg: the class the F-score is about
    curve = []
    for th in thresholds:
        pred_neg = p <= th
        tp = float(np.count_nonzero(pred_neg & neg))
        fp = float(np.count_nonzero(pred_neg & ~neg))
        fn = float(np.count_nonzero(~pred_neg & neg))
        prec = tp / (tp + fp) if tp + fp else float("nan")
        rec = tp / (tp + fn) if tp + fn else float("nan")
        f = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
        curve.append({"threshold": float(th), "precision": prec, "recall": rec, "fscore": f,
                      "pixel_error": (fp + fn) / p.size if p.size else float("nan")})
    finite = [c for c in curve if np.isfinite(c["fscore"])]
    best = max(finite, key=lambda c: c["fscore"]) if finite else {"threshold": float("nan"), "fscore": float("nan")}
    plain = min(curve, key=lambda c: c["pixel_error"] if np.isfinite(c["pixel_error"]) else np.inf)
    return {"pixel_error": 1.0 - best["fscore"], "best_threshold": best["threshold"], "fscore": best["fscore"],
            "min_plain_pixel_error": plain["pixel_error"], "min_plain_threshold": plain["threshold"],
            "class": "non-positive (prob <= threshold)", "curve": curve}


def balanced_error(prob, truth, *, positive: int = 1, ignore_index: int = 255, threshold: float = 0.5,
                   n_per_class: int = 5000, seed: int = 0) -> dict:
    """The paper's balanced per-pixel error: draw ``n_per_class`` positive and as many negative pixels (without
    replacement, seeded; all of them if there are fewer) and report the error rate on that balanced sample, with
    the false-negative and false-positive rates."""
    prob, truth = np.asarray(prob).ravel(), np.asarray(truth).ravel()
    valid = truth != ignore_index
    pos = np.flatnonzero(valid & (truth == positive))
    neg = np.flatnonzero(valid & (truth != positive))
    rng = np.random.default_rng(seed)
    ps = rng.choice(pos, size=min(n_per_class, pos.size), replace=False) if pos.size else pos
    ns = rng.choice(neg, size=min(n_per_class, neg.size), replace=False) if neg.size else neg
    fn = int((prob[ps] <= threshold).sum())
    fp = int((prob[ns] > threshold).sum())
    n = ps.size + ns.size
    return {"error": (fn + fp) / n if n else float("nan"), "n_positive": int(ps.size), "n_negative": int(ns.size),
            "false_negative_rate": fn / ps.size if ps.size else float("nan"),
            "false_positive_rate": fp / ns.size if ns.size else float("nan"), "threshold": threshold, "seed": seed}


def choose_count_threshold(counts, defective) -> dict:
    """Pick T minimising the detection error of "flag an image when its predicted defect-pixel count > T" on the
    given (validation) images. The error is constant between consecutive distinct counts; T is the middle of the
    first best interval (the largest count when flagging nothing is best)."""
    counts = np.asarray(counts, dtype=np.int64)
    truth = np.asarray(defective, dtype=bool)
    if counts.size == 0:
        raise ValueError("no images to choose a detection threshold on")
    levels = np.unique(np.concatenate([[-1], counts]))
    best = None
    for k, lo in enumerate(levels):
        err = float(np.mean((counts > lo) != truth))
        if best is None or err < best[0] - 1e-12:
            hi = levels[k + 1] if k + 1 < len(levels) else None
            best = (err, int(lo) if hi is None else (int(lo) + int(hi)) // 2)
    return {"threshold": best[1], "error": best[0]}


def detection_confusion(counts, defective, threshold: int) -> dict:
    """Confusion matrix [[TN, FP], [FN, TP]] and error of flagging images with count > threshold."""
    flag = np.asarray(counts) > threshold
    truth = np.asarray(defective, dtype=bool)
    tn, fp = int((~flag & ~truth).sum()), int((flag & ~truth).sum())
    fn, tp = int((~flag & truth).sum()), int((flag & truth).sum())
    n = tn + fp + fn + tp
    return {"confusion": [[tn, fp], [fn, tp]], "confusion_axes": "rows truth (ok, defective), cols predicted",
            "error": (fp + fn) / n if n else float("nan"), "n_images": n}


def group_pixel_errors(groups, confusions, positive: int = 1) -> dict:
    """Per source group (e.g. a defect class's folder): images, images with positive pixels, positive pixels, the
    error on positive pixels (missed) and on the other labelled pixels (falsely flagged), pooled over the group's
    images. ``confusions`` are the per-image (K, K) confusion matrices, in the order of ``groups``."""
    acc = {}
    for g, c in zip(groups, confusions):
        conf, n_img, n_def = acc.get(str(g), (0, 0, 0))
        acc[str(g)] = (conf + c, n_img + 1, n_def + int(c[positive].sum() > 0))
    out = {}
    for g, (conf, n_img, n_def) in sorted(acc.items()):
        pos = int(conf[positive].sum())
        hit = int(conf[positive, positive])
        neg = int(conf.sum()) - pos
        false_pos = int(conf[:, positive].sum()) - hit
        out[g] = {"images": n_img, "defective_images": n_def, "positive_pixels": pos,
                  "positive_error": (pos - hit) / pos if pos else None,
                  "negative_error": false_pos / neg if neg else None}
    return out


def group_detection(groups, counts, defective, threshold: int, indices) -> dict:
    """Per source group: how the detection rule (count > threshold) does on the images ``indices`` (test)."""
    out = {}
    for i in indices:
        d = out.setdefault(str(groups[i]), {"images": 0, "defective": 0, "flagged": 0, "wrong": 0})
        flag, truth = counts[i] > threshold, bool(defective[i])
        d["images"] += 1
        d["defective"] += int(truth)
        d["flagged"] += int(flag)
        d["wrong"] += int(flag != truth)
    for d in out.values():
        d["error"] = d["wrong"] / d["images"]
    return dict(sorted(out.items()))
