"""Instance metrics (SNEMI3D adapted Rand error, CREMI's VOI, border mask and score) on hand-computed cases, against
scikit-image's variation_of_information, and `evaluate --instances` end to end on TIFF / HDF5 / ISBI truths."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile

from mpfpipe.cli import main
from mpfpipe.evaluate import evaluate, instance_metrics as im


def test_adapted_rand_and_voi_of_a_merge_by_hand():
    gt = np.array([1, 1, 2, 2])
    seg = np.array([1, 1, 1, 1])
    # a = (2, 2), b = (4): sum_A = 8, sum_B = 16, sum_AB = 8; P = 1/2, R = 1, F = 2/3
    ar = im.adapted_rand(seg, gt)
    assert (ar["precision"], ar["recall"]) == (0.5, 1.0) and ar["arand"] == pytest.approx(1 / 3, rel=1e-15)
    assert im.voi(seg, gt) == (0.0, 1.0)  # one bit to tell which half of the merged object
    s = im.scores(seg, gt)
    assert s["cremi"] == pytest.approx(np.sqrt(1.0 * (1 / 3)), rel=1e-15)
    assert im.scores(gt, gt)["arand"] == 0.0 and im.scores(gt, gt)["cremi"] == 0.0


def test_adapted_rand_counts_truth_zero_in_n_and_proposal_zero_as_the_script_does():
    gt = np.array([0, 1, 1, 2, 2, 2])
    seg = np.array([5, 0, 3, 3, 3, 0])
    # truth 0 not counted, but n = 6 voxels; a = (2, 3), b = (3,) for id 3, c = 2 voxels of proposal 0
    sum_a, sum_b, sum_ab = 13.0, 9.0 + 2 / 6, 1.0 + 4.0 + 2 / 6
    p, r = sum_ab / sum_b, sum_ab / sum_a
    ar = im.adapted_rand(seg, gt)
    assert ar["precision"] == pytest.approx(p, rel=1e-14) and ar["recall"] == pytest.approx(r, rel=1e-14)
    assert ar["arand"] == pytest.approx(1 - 2 * p * r / (p + r), rel=1e-14)
    # VOI over the 5 truth voxels; the proposal's 0 is an ordinary id: pairs (1,0) (1,3) (2,3) (2,3) (2,0)
    pr = np.array([0.2, 0.2, 0.4, 0.2])
    split = -(pr * np.log2(pr / np.array([0.4, 0.4, 0.6, 0.6]))).sum()
    merge = -(pr * np.log2(pr / np.array([0.4, 0.6, 0.6, 0.4]))).sum()
    got = im.voi(seg, gt)
    assert got[0] == pytest.approx(split, rel=1e-14) and got[1] == pytest.approx(merge, rel=1e-14)


@pytest.mark.parametrize("seed", [0, 1])
def test_voi_matches_scikit_image(seed):
    from skimage.metrics import variation_of_information
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 6, (3, 20, 20))
    seg = rng.integers(0, 4, (3, 20, 20)) + 10 * (gt % 2)
    want = variation_of_information(gt, seg, ignore_labels=[0])  # (H(seg | gt), H(gt | seg)), gt = image0
    split, merge = im.voi(seg, gt)
    assert split == pytest.approx(want[0], rel=1e-12) and merge == pytest.approx(want[1], rel=1e-12)


def test_cremi_border_mask_by_hand():
    row = np.array([[1, 1, 1, 2, 2]])
    assert im.border_mask(row, 0).tolist() == [[False, False, True, True, False]]
    assert im.border_mask(row, 1).tolist() == [[False, True, True, True, True]]


def _objects():
    """Two sections of four touching objects, the right pair continuing through z (ids 3 and 4)."""
    gt = np.zeros((2, 8, 8), np.uint32)
    gt[0, :4, :4], gt[0, :4, 4:], gt[0, 4:, :4], gt[0, 4:, 4:] = 1, 2, 3, 4
    gt[1] = gt[0] + np.array([10, 0, 10, 0], np.uint32)[gt[0] - 1]  # left ids renamed in z = 1, right kept
    return gt


def test_evaluate_instances_on_a_tiff_truth_in_3d(tmp_path):
    gt = _objects()
    tifffile.imwrite(tmp_path / "truth.tif", gt)
    tifffile.imwrite(tmp_path / "same.tif", gt * 7 + 1)  # other names, same objects
    rep = evaluate(str(tmp_path / "same.tif"), str(tmp_path / "truth.tif"), instances=True)
    inst = rep["instances"]
    assert (inst["arand"], inst["voi_split"], inst["voi_merge"], inst["cremi"]) == (0.0, 0.0, 0.0, 0.0)
    assert (inst["v_rand_thinned"], inst["v_info_thinned"]) == (1.0, 1.0) and inst["n_objects"] == 6
    # per section: the ISBI scores only (ARAND and VOI are of the volume)
    assert inst["sections"] == [{"index": i, "v_rand_thinned": 1.0, "rand_split": 1.0, "rand_merge": 1.0,
                                 "v_info_thinned": 1.0} for i in range(len(gt))]
    merged = gt.copy()
    merged[merged == 2] = 4  # objects 2 and 4 (32 voxels each, through both sections) merged
    inst = evaluate(merged, gt, instances=True)["instances"]
    assert inst["voi_split"] == 0.0 and inst["voi_merge"] == 64 / 128 * 1.0  # one bit on half the voxels
    assert inst["mode"].startswith("3-D")


def test_evaluate_instances_cli_with_hdf5_truth_and_a_report(tmp_path, capsys):
    import h5py
    gt = _objects()
    with h5py.File(tmp_path / "truth.h5", "w") as f:
        f["volumes/labels/neuron_ids"] = gt.astype(np.uint64)
    np.save(tmp_path / "pred.npy", gt.astype(np.int32))
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", str(tmp_path / "pred.npy"), f"{tmp_path / 'truth.h5'}:volumes/labels/neuron_ids",
              "--instances", "-o", str(tmp_path / "ev")])
    assert exc.value.code == 0
    import json
    rep = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert rep["instances"]["arand"] == 0.0 and set(rep["instances"]) >= {
        "arand", "voi_split", "voi_merge", "cremi", "v_rand_thinned", "v_info_thinned"}


@pytest.mark.parametrize("truth, message", [
    (np.arange(256, dtype=np.uint8).reshape(16, 16), "too many ids for its dtype"),
    (np.ones((4, 4), np.float32), "must be integers"),
    (-np.ones((4, 4), np.int16), "negative ids"),
])
def test_bad_instance_truth_gives_one_clear_line(tmp_path, capsys, truth, message):
    tifffile.imwrite(tmp_path / "truth.tif", truth)
    tifffile.imwrite(tmp_path / "pred.tif", np.ones((16, 16) if truth.size == 256 else (4, 4), np.uint32))
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", str(tmp_path / "pred.tif"), str(tmp_path / "truth.tif"), "--instances"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 1 and len(err) == 1 and err[0].startswith("error:") and message in err[0], err


def test_isbi_truth_components_as_instances_score_perfectly(shared_data):
    from scipy import ndimage
    labels = tifffile.imread(shared_data / "isbi2012" / "train-labels.tif", key=[3, 4])  # 0 = membrane
    ids = np.stack([ndimage.label(lab == 255)[0] for lab in labels]).astype(np.uint32)
    ids[1][ids[1] > 0] += 1000  # unique per section
    inst = evaluate(ids, labels, truth_positive=0, instances=True)["instances"]
    assert inst["mode"].startswith("per section")
    assert (inst["arand"], inst["voi_split"], inst["voi_merge"]) == (0.0, 0.0, 0.0)
    assert (inst["v_rand_thinned"], inst["v_info_thinned"]) == (1.0, 1.0)
    # one id for the two largest cells of each section: merge errors for ARAND and VOI, while the ISBI scores,
    # which see only the boundaries (the challenge takes a boundary map), still see two cells
    worse = ids.copy()
    for z in range(2):
        sizes = np.bincount(ids[z].ravel())
        big = np.argsort(sizes[1:])[-2:] + 1
        worse[z][ids[z] == big[0]] = big[1]
    bad = evaluate(worse, labels, truth_positive=0, instances=True)["instances"]
    assert bad["voi_split"] == 0.0 and bad["voi_merge"] > 0 and bad["arand"] > 0
    assert (bad["v_rand_thinned"], bad["v_info_thinned"]) == (1.0, 1.0)


def test_choose_parameters_keeps_the_best_official_score():
    from mpfpipe.evaluate.instances import choose_parameters
    from mpfpipe.evaluate.official import truth_segments
    p = np.full((20, 41), 0.1, np.float32)
    p[:, 20] = 0.45  # a faint membrane: merged by a merge threshold above its boundary mean (0.275)
    truth = np.zeros((20, 41), np.uint8)
    truth[:, 20] = 1
    got = choose_parameters([p], [truth_segments(truth)], grid={"merge_threshold": (0.3, 0.2)},
                            base={"threshold": 0.4, "seed_distance": 3, "min_size": 10})
    # kept apart (0.2): 0.99 (the one-pixel boundary falls on either side of the line); merged (0.3): one segment
    assert got["parameters"]["merge_threshold"] == 0.2 and got["v_rand_thinned"] > 0.99
    assert [g["merge_threshold"] for g in got["grid"]] == [0.3, 0.2] and got["grid"][0]["v_info_thinned"] == 0.0


def test_per_section_scores_by_hand():
    """report["instances"]["sections"]: each section's own ISBI scores, whose means the report's scores are."""
    from mpfpipe.evaluate.instances import score_instances
    truth = np.full((2, 6, 7), 255, np.uint8)
    truth[:, :, 3] = 0  # a membrane column: two truth cells of 18 pixels in each section
    split = np.where(np.arange(7) <= 3, 1, 2)[None].repeat(6, 0)  # the boundary on the membrane: the truth's cells
    merged = np.ones((6, 7), np.int64)  # one object over both cells
    inst = score_instances([split, merged], truth, truth_positive=0, positive=1)
    s0, s1 = inst["sections"]
    assert (s0["index"], s1["index"]) == (0, 1)
    assert (s0["v_rand_thinned"], s0["rand_split"], s0["rand_merge"], s0["v_info_thinned"]) == (1.0, 1.0, 1.0, 1.0)
    # one proposal segment over p = (1/2, 1/2): sum p^2 = 1/2 against the proposal's 1 and the truth's 1/2, so
    # precision (merge) 1/2 and recall (split) 1, V_rand 2/3; the proposal's entropy is 0: V_info 0 (the Java's rule)
    assert (s1["rand_split"], s1["rand_merge"], s1["v_info_thinned"]) == (1.0, 0.5, 0.0)
    assert s1["v_rand_thinned"] == pytest.approx(2 / 3, rel=1e-15)
    assert inst["v_rand_thinned"] == pytest.approx(5 / 6, rel=1e-15) and inst["v_info_thinned"] == 0.5
    gt = (np.arange(7) > 3).astype(np.int64)[None].repeat(6, 0) + 1  # the truth's objects, membrane 0
    gt[:, 3] = 0
    for sec, seg in zip(inst["sections"], (split, merged)):  # ARAND and VOI of the section alone
        alone = im.scores(seg, gt)
        assert all(sec[k] == alone[k] for k in ("arand", "voi_split", "voi_merge"))
    assert inst["arand"] == pytest.approx((s0["arand"] + s1["arand"]) / 2, rel=1e-15)
    only = score_instances([split, merged], truth, truth_positive=0, positive=1, indices=[1])
    assert [q["index"] for q in only["sections"]] == [1] and only["v_rand_thinned"] == s1["v_rand_thinned"]
