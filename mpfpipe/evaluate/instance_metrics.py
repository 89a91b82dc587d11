"""Instance (neuron id) metrics of label volumes, implemented from the challenges' own evaluation code:

- adapted Rand error, SNEMI3D's definition (its MATLAB script, as ported in github cremi/cremi_python
  ``cremi/evaluation/rand.py`` ``adapted_rand`` and gala's ``evaluate.adapted_rand``): with c_ij the voxel counts of
  truth id i (i != 0: truth 0 is not counted) and proposal id j, a_i = sum_j c_ij, b_j = sum_{i} c_ij (j != 0),
  c = sum_i c_i0 and n the number of **all** voxels (truth 0 included, as the script's ``n = numel(segA)``):
  sum_A = sum a_i^2, sum_B = sum b_j^2 + c / n, sum_AB = sum_{j != 0} c_ij^2 + c / n; precision = sum_AB / sum_B,
  recall = sum_AB / sum_A, ARAND = 1 - 2PR / (P + R);
- variation of information (cremi_python ``cremi/evaluation/voi.py`` ``voi``, Meila 2007): over the voxels whose
  truth id is not 0 (the proposal's 0 is an ordinary id), split = H(proposal | truth), merge = H(truth | proposal),
  in bits;
- CREMI score (cremi_python's example evaluation, "the geometric mean of (VOI split + VOI merge) and ARAND"):
  sqrt((split + merge) * ARAND);
- CREMI's border mask (``cremi/evaluation/border_mask.py`` ``create_border_mask_2d``, used by ``NeuronIds`` when a
  ``border_threshold`` is set): per section, truth voxels within ``max_dist`` pixels of a 4-neighbour with another id
  are set to 0 (not counted).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def _joint(seg: np.ndarray, gt: np.ndarray):
    """(truth index, proposal id, count) of the voxel pairs with truth != 0; proposal ids as given."""
    seg, gt = np.asarray(seg).ravel(), np.asarray(gt).ravel()
    if seg.shape != gt.shape:
        raise ValueError(f"proposal has {seg.size} voxels, truth {gt.size}")
    fg = gt != 0
    if not fg.any():
        return np.zeros(0, np.int64), np.zeros(0, seg.dtype), np.zeros(0, np.float64)
    _, g = np.unique(gt[fg], return_inverse=True)  # compact ids first: one int64 key per voxel pair
    s_ids, s = np.unique(seg[fg], return_inverse=True)
    key, counts = np.unique(g.ravel().astype(np.int64) * s_ids.size + s.ravel(), return_counts=True)
    return key // s_ids.size, s_ids[key % s_ids.size], counts.astype(np.float64)


def adapted_rand(seg: np.ndarray, gt: np.ndarray) -> dict:
    """SNEMI3D's adapted Rand error of ``seg`` against ``gt`` with its precision and recall (NaN without truth)."""
    gi, sj, c = _joint(seg, gt)
    n = float(np.asarray(gt).size)
    if not c.size:
        return {"arand": float("nan"), "precision": float("nan"), "recall": float("nan")}
    a = np.bincount(gi, weights=c)
    on = sj != 0
    _, bj = np.unique(sj[on], return_inverse=True)
    b = np.bincount(bj.ravel(), weights=c[on]) if on.any() else np.zeros(0)
    c0 = float(c[~on].sum())
    sum_a = float((a * a).sum())
    sum_b = float((b * b).sum()) + c0 / n
    sum_ab = float((c[on] ** 2).sum()) + c0 / n
    prec, rec = sum_ab / sum_b, sum_ab / sum_a
    return {"arand": 1.0 - 2.0 * prec * rec / (prec + rec), "precision": prec, "recall": rec}


def voi(seg: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """(split, merge) = (H(seg | gt), H(gt | seg)) in bits over the voxels with gt != 0 (NaN without truth)."""
    gi, sj, c = _joint(seg, gt)
    if not c.size:
        return float("nan"), float("nan")
    p = c / c.sum()
    _, si = np.unique(sj, return_inverse=True)
    pg = np.bincount(gi, weights=p)[gi]
    ps = np.bincount(si.ravel(), weights=p)[si.ravel()]
    split = float(-(p * np.log2(p / pg)).sum())
    merge = float(-(p * np.log2(p / ps)).sum())
    return max(split, 0.0) + 0.0, max(merge, 0.0) + 0.0  # + 0.0: no -0.0 from rounding


def cremi_score(voi_split: float, voi_merge: float, arand: float) -> float:
    """CREMI's score: the geometric mean of VOI split + merge and ARAND."""
    return float(np.sqrt((voi_split + voi_merge) * arand))


def border_mask(gt: np.ndarray, max_dist: float) -> np.ndarray:
    """CREMI's border mask of a (Z, Y, X) or (Y, X) truth, section by section: True where a voxel lies within
    ``max_dist`` pixels of a pixel with a 4-neighbour of another id (edges replicate)."""
    gt = np.asarray(gt)
    if gt.ndim == 2:
        return border_mask(gt[None], max_dist)[0]
    out = np.zeros(gt.shape, bool)
    for z, img in enumerate(gt):
        pad = np.pad(img, 1, mode="edge")
        inner = ((img == pad[:-2, 1:-1]) & (img == pad[2:, 1:-1]) & (img == pad[1:-1, :-2]) & (img == pad[1:-1, 2:]))
        out[z] = ndimage.distance_transform_edt(inner) <= max(max_dist, 0)
    return out


def scores(seg: np.ndarray, gt: np.ndarray) -> dict:
    """ARAND (with precision / recall), VOI split / merge and the CREMI score of one volume or section."""
    ar = adapted_rand(seg, gt)
    split, merge = voi(seg, gt)
    return {"arand": ar["arand"], "rand_precision": ar["precision"], "rand_recall": ar["recall"],
            "voi_split": split, "voi_merge": merge, "cremi": cremi_score(split, merge, ar["arand"])}
