"""Augmentation: reproducible from (seed, epoch, index), labels transformed like the image, outside = ignore."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpfpipe.data import IGNORE_INDEX, AugmentSpec, augment
from mpfpipe.errors import DataError


def blocks(h, w):
    """Labels of 4 big rectangles (classes 0..3) and an image whose value is the class id (plus a gradient
    channel, to see orientation)."""
    lab = np.zeros((h, w), np.uint8)
    lab[: h // 2, w // 2:] = 1
    lab[h // 2:, : w // 2] = 2
    lab[h // 2:, w // 2:] = 3
    img = np.stack([lab.astype(np.float32), np.linspace(0, 1, h * w, dtype=np.float32).reshape(h, w)])
    return img, lab


def test_reproducible_from_seed_epoch_index():
    img, lab = blocks(48, 48)
    img0, lab0 = img.copy(), lab.copy()
    spec = AugmentSpec(flip=True, rot90=True, rotate=True, jitter=0.1)
    a = augment(img, lab, spec, seed=3, epoch=5, index=7)
    b = augment(img.copy(), lab.copy(), spec, seed=3, epoch=5, index=7)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    others = [augment(img, lab, spec, seed=3, epoch=e, index=7)[0] for e in range(6, 10)]
    assert any(not np.array_equal(a[0], o) for o in others)
    # inputs untouched, outputs typed
    assert np.array_equal(img, img0) and np.array_equal(lab, lab0)
    assert a[0].dtype == np.float32 and a[1].dtype == np.uint8 and a[0].shape == img.shape


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), epoch=st.integers(0, 1000), index=st.integers(0, 10**6),
       h=st.integers(3, 20), w=st.integers(3, 20))
def test_flips_and_quarter_turns_keep_image_and_labels_together(seed, epoch, index, h, w):
    rng = np.random.default_rng(seed)
    lab = rng.integers(0, 4, (h, w)).astype(np.uint8)
    img = lab[None].astype(np.float32)
    out_img, out_lab = augment(img, lab, AugmentSpec(flip=True, rot90=True), seed, epoch, index)
    assert out_img.shape == img.shape and out_lab.shape == lab.shape
    assert np.array_equal(out_img[0], out_lab.astype(np.float32))
    assert sorted(out_lab.ravel().tolist()) == sorted(lab.ravel().tolist())  # a permutation of the pixels


def test_arbitrary_rotation_labels_follow_image():
    img, lab = blocks(64, 80)
    spec = AugmentSpec(flip=False, rot90=False, rotate=True, max_angle=40)
    checked = 0
    for index in range(6):
        out_img, out_lab = augment(img, lab, spec, seed=1, epoch=0, index=index)
        assert out_img.shape == img.shape and out_lab.shape == lab.shape
        # at points well inside a region (3x3 neighbourhood of one label), image value == label
        for y, x in [(10, 20), (10, 60), (50, 20), (50, 60), (32, 40), (20, 30), (45, 55)]:
            win = out_lab[y - 1:y + 2, x - 1:x + 2]
            if (win == win[1, 1]).all() and win[1, 1] != IGNORE_INDEX:
                assert abs(out_img[0, y, x] - out_lab[y, x]) < 1e-4
                checked += 1
    assert checked >= 20


def test_rotation_marks_pixels_from_outside_as_ignore():
    img, lab = blocks(41, 41)
    spec = AugmentSpec(flip=False, rot90=False, rotate=True, max_angle=180)
    hit = False
    for index in range(10):
        rng = np.random.default_rng([0, 0, index])
        rng.random(2), rng.integers(4)
        angle = rng.uniform(-180, 180)
        _, out = augment(img, lab, spec, seed=0, epoch=0, index=index)
        assert out[20, 20] != IGNORE_INDEX  # the centre always comes from inside
        if 20 < abs(angle) % 90 < 70:
            assert (out[0, 0], out[0, -1], out[-1, 0], out[-1, -1]) == (IGNORE_INDEX,) * 4
            hit = True
        inside = out != IGNORE_INDEX
        assert set(np.unique(out[inside]).tolist()) <= {0, 1, 2, 3}
    assert hit


def test_non_square_shape_kept_and_quarter_turns_are_half_turns():
    img, lab = blocks(30, 50)
    for index in range(8):
        out_img, out_lab = augment(img, lab, AugmentSpec(flip=False, rot90=True), 0, 0, index)
        assert out_img.shape == img.shape
        assert np.array_equal(out_lab, lab) or np.array_equal(out_lab, lab[::-1, ::-1])


def test_labels_only_matches_full_call_and_jitter_only_touches_image():
    img, lab = blocks(32, 32)
    spec = AugmentSpec(rotate=True, jitter=0.2)
    full = augment(img, lab, spec, 2, 3, 4)
    only = augment(None, lab, spec, 2, 3, 4)
    assert only[0] is None and np.array_equal(full[1], only[1])
    no_jit = augment(img, lab, AugmentSpec(rotate=True), 2, 3, 4)
    assert np.array_equal(no_jit[1], full[1]) and not np.allclose(no_jit[0], full[0])
    assert augment(img, lab, None, 0, 0, 0)[1] is lab


def test_spec_roundtrip_and_errors():
    spec = AugmentSpec(flip=False, rot90=True, rotate=True, jitter=0.05, max_angle=30)
    assert AugmentSpec.from_dict(spec.to_dict()) == spec
    assert AugmentSpec.from_dict(None) is None
    with pytest.raises(DataError, match="unknown augmentation option"):
        AugmentSpec.from_dict({"flip": True, "shear": 3})
    with pytest.raises(DataError, match="jitter"):
        AugmentSpec(jitter=-1)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 50), st.integers(8, 40), st.integers(8, 40), st.integers(1, 48), st.integers(0, 12))
def test_crop_cuts_target_region_with_ignored_context(index, h, w, crop, margin):
    img, lab = blocks(h, w)
    spec = AugmentSpec(flip=False, rot90=False, crop=crop, margin=margin)
    a_img, a_lab = augment(img, lab, spec, seed=1, epoch=2, index=index)
    labs_only = augment(None, lab, spec, seed=1, epoch=2, index=index)[1]
    assert np.array_equal(a_lab, labs_only)  # class counts for balancing see the same crop
    # find the cut-out by its gradient channel (unique values): it is a contiguous window of the image
    y0, x0 = np.argwhere(img[1] == a_img[1, 0, 0])[0]
    hh, ww = a_lab.shape
    assert np.array_equal(a_img, img[:, y0:y0 + hh, x0:x0 + ww])
    labelled = a_lab != IGNORE_INDEX
    ys, xs = np.nonzero(labelled)
    ch, cw = min(crop, h), min(crop, w)
    assert labelled.sum() == ch * cw and (np.ptp(ys) + 1, np.ptp(xs) + 1) == (ch, cw)
    assert np.array_equal(a_lab[labelled], lab[y0:y0 + hh, x0:x0 + ww][labelled])
    # context: margin pixels on each side unless the image ends there
    assert ys.min() == min(margin, y0 + ys.min()) and xs.min() == min(margin, x0 + xs.min())
    assert hh - 1 - ys.max() == min(margin, h - (y0 + ys.max()) - 1)


def test_crop_positions_cover_the_image_and_parse():
    from mpfpipe.data import parse_augment
    img, lab = blocks(64, 64)
    spec = AugmentSpec.from_dict(parse_augment("crop=16,margin=4"))
    assert spec.crop == 16 and spec.margin == 4 and spec.active and not spec.flip
    seen = np.zeros((64, 64), bool)
    for index in range(600):
        _, a_lab = augment(img, lab, spec, seed=0, epoch=0, index=index)
        y0, x0 = np.argwhere(img[1] == _[1, 0, 0])[0]
        hh, ww = a_lab.shape
        seen[y0:y0 + hh, x0:x0 + ww] |= a_lab != IGNORE_INDEX
    assert seen.any(axis=0).all() and seen.any(axis=1).all()  # every row and column is a target of some crop
    for bad in ("crop=-1", "crop=2.5", "crop=x"):
        with pytest.raises(DataError):
            AugmentSpec.from_dict(parse_augment(bad))
