"""Metric definitions checked against brute force and hand-made cases."""
import itertools

import numpy as np
import pytest

from mpfpipe.evaluate import metrics


def _brute_rand(truth_seg, pred_seg):
    """Pair counting over ordered pixel pairs (self pairs included) inside truth segments; predicted label 0 is
    a singleton per pixel."""
    idx = np.flatnonzero(truth_seg.ravel() > 0)
    t, p = truth_seg.ravel()[idx], pred_seg.ravel()[idx]
    same_t = same_p = both = 0
    for a, b in itertools.product(range(idx.size), repeat=2):
        st = t[a] == t[b]
        sp = a == b or (p[a] == p[b] and p[a] > 0)
        same_t += st
        same_p += sp
        both += st and sp
    prec, rec = both / same_p, both / same_t
    return 2 * prec * rec / (prec + rec), rec, prec


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rand_fscore_matches_pair_counting(seed):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 4, size=(7, 6))
    pred = rng.integers(0, 3, size=(7, 6))
    got = metrics.rand_fscore(truth, pred)
    f, split, merge = _brute_rand(truth, pred)
    assert got["v_rand"] == pytest.approx(f) and got["split"] == pytest.approx(split)
    assert got["merge"] == pytest.approx(merge)


def test_vrand_perfect_split_and_merge():
    # truth: two cells separated by a membrane column (class 1)
    truth = np.zeros((1, 6, 9), np.uint8)
    truth[0, :, 4] = 1
    perfect = np.where(truth == 1, 0.9, 0.1).astype(np.float32)
    res = metrics.vrand_sweep(list(perfect), list(truth), thresholds=(0.5,))
    assert res["v_rand"] == pytest.approx(1.0) and res["rand_error"] == pytest.approx(0.0)
    merged = np.full_like(perfect, 0.1)  # no membrane predicted: the two cells merge
    res = metrics.vrand_sweep(list(merged), list(truth), thresholds=(0.5,))
    assert res["curve"][0]["split"] == pytest.approx(1.0) and res["curve"][0]["merge"] == pytest.approx(0.5)
    # the sweep picks the best threshold
    res = metrics.vrand_sweep(list(np.where(truth == 1, 0.35, 0.1)), list(truth), thresholds=(0.2, 0.5))
    assert res["best_threshold"] == 0.2 and res["v_rand"] == pytest.approx(1.0)


def test_pixel_error_iou_dice():
    truth = np.array([[0, 0, 1, 1], [0, 255, 1, 1]])
    pred = np.array([[0, 1, 1, 1], [0, 1, 0, 1]])
    conf = metrics.confusion_matrix(pred, truth, 2)
    assert conf.tolist() == [[2, 1], [1, 3]]
    assert metrics.pixel_error(conf) == pytest.approx(2 / 7)
    iou, dice = metrics.iou_dice(conf)
    assert iou == pytest.approx([2 / 4, 3 / 5]) and dice == pytest.approx([4 / 6, 6 / 8])


def test_balanced_error_is_seeded_and_balanced():
    rng = np.random.default_rng(0)
    truth = (rng.random(100_000) < 0.05).astype(np.uint8)  # rare positives
    prob = np.where(truth == 1, 0.4, 0.1)  # every positive missed, every negative right
    prob[:10] = 0.7
    a = metrics.balanced_error(prob, truth, n_per_class=500, seed=3)
    b = metrics.balanced_error(prob, truth, n_per_class=500, seed=3)
    assert a == b and a["n_positive"] == a["n_negative"] == 500
    assert a["false_negative_rate"] == pytest.approx(1.0) and a["error"] == pytest.approx(
        (500 + a["false_positive_rate"] * 500) / 1000)


def test_detection_threshold_and_confusion():
    counts = [0, 3, 5, 40, 60, 2, 100]
    defective = [False, False, False, True, True, False, True]
    chosen = metrics.choose_count_threshold(counts, defective)
    assert chosen == {"threshold": 22, "error": 0.0}  # middle of the best interval [5, 40)
    res = metrics.detection_confusion([1, 50, 30, 2], [False, True, False, True], chosen["threshold"])
    assert res["confusion"] == [[1, 1], [1, 1]] and res["error"] == 0.5
    assert metrics.choose_count_threshold([0, 0], [False, False])["error"] == 0


def test_group_pixel_errors_and_detection_by_hand():
    # image 0 (crack): 4 defect pixels, 1 missed; 6 background, 2 flagged. image 1 (crack): no defect, 1 of 10
    # flagged. image 2 (free): 0 of 10 flagged. A 3-class case checks the positive row/column are used.
    c0 = np.array([[4, 2], [1, 3]])
    c1 = np.array([[9, 1], [0, 0]])
    c2 = np.array([[10, 0], [0, 0]])
    g = metrics.group_pixel_errors(["crack", "crack", "free"], [c0, c1, c2])
    assert g["crack"] == {"images": 2, "defective_images": 1, "positive_pixels": 4, "positive_error": 0.25,
                          "negative_error": 3 / 16}
    assert g["free"]["positive_error"] is None and g["free"]["negative_error"] == 0
    c3 = np.array([[5, 0, 1], [0, 3, 2], [1, 1, 7]])  # positive class 2: 9 pixels, 2 missed; 2 of 11 flagged
    g3 = metrics.group_pixel_errors(["a"], [c3], positive=2)["a"]
    assert g3["positive_error"] == pytest.approx(2 / 9) and g3["negative_error"] == pytest.approx(3 / 11)
    det = metrics.group_detection(["a", "a", "b", "b", "c"], [0, 9, 9, 0, 50], [True, True, False, False, True],
                                  threshold=5, indices=[0, 1, 2, 3])
    assert det == {"a": {"images": 2, "defective": 2, "flagged": 1, "wrong": 1, "error": 0.5},
                   "b": {"images": 2, "defective": 0, "flagged": 1, "wrong": 1, "error": 0.5}}


def test_fscore_sweep_is_the_challenge_pixel_error():
    # 10 pixels, class 1 = membrane (positive); the F-score is about class 0 (the ISBI labels' > 0 pixels)
    truth = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 255])
    prob = np.array([.05, .15, .15, .35, .65, .95, .25, .75, .95, 0.0])
    res = metrics.fscore_sweep(prob, truth, thresholds=(0.1, 0.3, 0.5, 0.7))
    by_t = {c["threshold"]: c for c in res["curve"]}
    # t = 0.3: predicted class 0 = {.05, .15, .15, .25} -> TP 3, FP 1 (the membrane at .25), FN 3
    assert by_t[0.3]["precision"] == pytest.approx(3 / 4) and by_t[0.3]["recall"] == pytest.approx(3 / 6)
    assert by_t[0.3]["fscore"] == pytest.approx(2 * 3 / (6 + 1 + 3))
    assert by_t[0.3]["pixel_error"] == pytest.approx(4 / 9)  # the ignored pixel is not counted
    # t = 0.7: class 0 = {.05, .15, .15, .35, .65, .25} -> TP 5, FP 1, FN 1: F = 10/12, the best
    assert res["best_threshold"] == 0.7 and res["pixel_error"] == pytest.approx(1 - 10 / 12)
    assert res["min_plain_pixel_error"] == pytest.approx(2 / 9) and res["min_plain_threshold"] == 0.7
    # a perfect prediction scores 0 at some threshold; the class ids do not matter, only which one is positive
    perfect = np.where(truth == 1, 0.9, 0.1)
    assert metrics.fscore_sweep(perfect, truth)["pixel_error"] == pytest.approx(0.0)
    renamed = metrics.fscore_sweep(prob, np.where(truth == 255, 255, 1 - truth), positive=0,
                                   thresholds=(0.1, 0.3, 0.5, 0.7))
    assert renamed["curve"] == res["curve"]
