"""The challenge's thinned Rand / information scores and VOI, against an independent computation built on
scikit-image's contingency table and variation_of_information (singletons made explicit as their own labels)."""
from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import contingency_table, variation_of_information

from mpfpipe.evaluate import evaluate, thinned


def _singletons(truth_seg, pred_seg):
    """The prediction with every membrane pixel (label 0) as a label of its own."""
    out = pred_seg.astype(np.int64).copy()
    zero = np.flatnonzero(out.ravel() == 0)
    out.ravel()[zero] = out.max() + 1 + np.arange(zero.size)
    return out


def _independent(truth_seg, pred_seg):
    """Rand, information scores and VOI from skimage's (normalised, truth-background-ignoring) contingency table."""
    pred = _singletons(truth_seg, pred_seg)
    p = contingency_table(truth_seg, pred, ignore_labels=[0], normalize=True).toarray().astype(np.float64)
    a, b = p.sum(1), p.sum(0)
    sab, sa, sb = (p ** 2).sum(), (a ** 2).sum(), (b ** 2).sum()

    def h(x):
        x = x[x > 0]
        return float(-(x * np.log2(x)).sum())
    ht, hs, hst = h(a), h(b), h(p.ravel())
    mi = hs + ht - hst
    # skimage: (H(image1 | image0), H(image0 | image1)) in bits = (split, merge) with image0 the truth; its
    # background ignored
    h_s_given_t, h_t_given_s = variation_of_information(truth_seg, pred, ignore_labels=[0])
    return {"v_rand": 2 * sab / (sa + sb), "rand_split": sab / sa, "rand_merge": sab / sb,
            "v_info": 2 * mi / (hs + ht), "info_split": mi / hs, "info_merge": mi / ht,
            "voi_split": h_s_given_t, "voi_merge": h_t_given_s}


def _membranes(rng, h=48, w=56):
    """A random cell map: membrane = boundaries between the Voronoi cells of a few seeds, 1-3 pixels wide."""
    seeds = rng.uniform(0, [h, w], size=(7, 2))
    yy, xx = np.mgrid[:h, :w]
    d = np.sqrt((yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2)
    d.sort(axis=-1)
    return (d[..., 1] - d[..., 0]) < rng.uniform(0.8, 2.5)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_scores_match_skimage_contingency_table_and_voi(seed):
    rng = np.random.default_rng(seed)
    truth = _membranes(rng)
    pred = _membranes(rng) | (rng.random(truth.shape) < 0.02)  # another cell map, plus salt
    ts = thinned.thinned_segments(truth)
    ps = thinned.thinned_segments(pred)
    got = thinned.scores(ts, ps)
    want = _independent(ts, ps)
    assert set(got) == set(want)
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-10, abs=1e-12), key
    assert 0 < got["v_rand"] < 1 and 0 < got["v_info"] < 1 and got["voi_split"] > 0 and got["voi_merge"] > 0


def test_thinning_gives_one_pixel_membranes_that_still_separate_segments():
    m = np.zeros((30, 40), bool)
    m[:, 9:14] = True   # a 5-pixel-wide membrane reaching the top and bottom edges
    m[17:20, :] = True  # a 3-pixel-wide one across
    t = thinned.thin(m)
    assert t.sum() < m.sum() and (t <= m).all()
    assert (t[:, 9:14].sum(axis=1)[:15] == 1).all()  # one pixel wide away from the crossing
    seg = thinned.thinned_segments(m)
    assert seg.max() == 4  # the four quadrants stay apart, also along the image edges
    # a thick prediction of the same membranes is a perfect segmentation after thinning
    thin_truth = thinned.thinned_segments(t)
    assert thinned.scores(thin_truth, seg)["v_rand"] == 1.0


def test_perfect_prediction_gives_1_1_0_0_through_evaluate():
    rng = np.random.default_rng(5)
    truth = np.stack([_membranes(rng), _membranes(rng)]).astype(np.uint8)  # 1 = membrane
    truth[0, :3, :3] = 255  # an unlabelled corner
    probs = np.stack([1.0 - truth, truth]).astype(np.float32)
    probs[:, truth == 255] = 0.5
    rep = evaluate(probs, truth, overlays=0)
    assert rep["isbi2012"]["v_rand_thinned"] == 1.0 and rep["isbi2012"]["v_info_thinned"] == 1.0
    assert rep["voi"]["split"] == 0.0 and rep["voi"]["merge"] == 0.0
    # a prediction that merges everything: V_rand and V_info fall, only VOI merge grows
    flat = np.stack([np.ones_like(truth), np.zeros_like(truth)]).astype(np.float32)
    bad = evaluate(flat, truth, overlays=0, thresholds=(0.5,))
    assert bad["isbi2012"]["v_rand_thinned"] < 0.5 and bad["isbi2012"]["v_info_thinned"] == 0.0
    assert bad["voi"]["split"] == 0.0 and bad["voi"]["merge"] > 1.0


def test_evaluate_averages_slice_scores_at_the_best_threshold():
    rng = np.random.default_rng(7)
    truth = np.stack([_membranes(rng) for _ in range(2)]).astype(np.uint8)
    noisy = np.clip(truth + rng.normal(0, 0.45, truth.shape), 0, 1).astype(np.float32)
    probs = np.stack([1 - noisy, noisy])
    rep = evaluate(probs, truth, overlays=0)
    isbi, voi = rep["isbi2012"], rep["voi"]
    th_r, th_i = isbi["v_rand_threshold"], isbi["v_info_threshold"]
    per_r = [_independent(thinned.thinned_segments(t == 1), thinned.thinned_segments(p > th_r))
             for p, t in zip(noisy, truth)]
    per_i = [_independent(thinned.thinned_segments(t == 1), thinned.thinned_segments(p > th_i))
             for p, t in zip(noisy, truth)]
    assert isbi["v_rand_thinned"] == pytest.approx(np.mean([s["v_rand"] for s in per_r]), rel=1e-10)
    assert isbi["v_info_thinned"] == pytest.approx(np.mean([s["v_info"] for s in per_i]), rel=1e-10)
    assert voi["split"] == pytest.approx(np.mean([s["voi_split"] for s in per_i]), rel=1e-10)
    assert voi["merge"] == pytest.approx(np.mean([s["voi_merge"] for s in per_i]), rel=1e-10)
    assert isbi["v_rand_thinned"] == max(c["v_rand"] for c in isbi["curve"])


def test_isbi_labels_as_their_own_prediction_give_1_1_0_0(shared_data):
    import tifffile
    labels = tifffile.imread(shared_data / "isbi2012" / "train-labels.tif", key=[7])  # 0 = membrane, 255 = cell
    membrane = (labels == 0).astype(np.uint8)
    isbi, voi = thinned.thinned_sweep([membrane.astype(np.float32)], [membrane], thresholds=(0.0, 0.5))
    assert (isbi["v_rand_thinned"], isbi["v_info_thinned"], voi["split"], voi["merge"]) == (1.0, 1.0, 0.0, 0.0)
    # thinning keeps the topology: the thinned truth has exactly the unthinned labels' cells (126 on this slice)
    assert thinned.truth_segments(membrane).max() == thinned.segments(membrane == 0).max() > 100
