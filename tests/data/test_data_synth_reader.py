"""Synthetic datasets (seeded, standard layout) and the reader API the training side uses."""
import pickle

import numpy as np
import pytest

from mpfpipe.data import AugmentSpec, Sample, normalise, open_dataset, synth_defects, synth_em
from mpfpipe.errors import DataError
from mpfpipe.options import OptionError


@pytest.fixture(scope="module")
def em(tmp_path_factory):
    return open_dataset(synth_em(tmp_path_factory.mktemp("em") / "em.zarr", n_images=6, size=(64, 80), seed=0,
                                 split=(0.5, 0.25, 0.25)))


@pytest.fixture(scope="module")
def defects(tmp_path_factory):
    return open_dataset(synth_defects(tmp_path_factory.mktemp("def") / "d.zarr", n_images=40, size=(48, 64),
                                      defect_fraction=0.2, seed=1, split=(0.5, 0.25, 0.25), variable_size=True))


def test_em_layout_and_content(em):
    g = em.group
    assert em.n_images == 6 and em.channels == 1 and em.class_names == ["cell", "membrane"]
    assert g["images"].shape == (6, 1, 64, 80) and g["images"].chunks == (1, 1, 64, 80)
    assert g["labels"].dtype == np.uint8 and em.ignore_index == 255
    assert g["images"].compressors[0].cname.value == "zstd"
    attrs = em.attrs
    assert attrs["mpfpipe_dataset"] == {"version": 1, "complete": True}
    assert {"sources", "options", "mpfpipe_version", "created"} <= set(attrs["provenance"])
    counts = em.class_counts()
    frac = counts[1] / counts.sum()
    assert 0.08 < frac < 0.4  # membranes are a minority, like ISBI's ~22 %
    img = em.raw_image(0)[0].astype(float)
    lab = em.raw_labels(0)
    assert img[lab == 1].mean() < img[lab == 0].mean() - 40  # dark membranes


def test_synth_is_seeded(tmp_path, em):
    again = open_dataset(synth_em(tmp_path / "a.zarr", n_images=6, size=(64, 80), seed=0, split=(0.5, 0.25, 0.25)))
    other = open_dataset(synth_em(tmp_path / "b.zarr", n_images=2, size=(64, 80), seed=1))
    assert np.array_equal(again.raw_image(3), em.raw_image(3)) and np.array_equal(again.raw_labels(3),
                                                                                   em.raw_labels(3))
    assert again.attrs["splits"] == em.attrs["splits"]
    assert not np.array_equal(other.raw_image(0), em.raw_image(0))


def test_defects_variable_sizes_and_rare_defects(defects):
    assert sum(defects.positive) == 8
    assert len(set(defects.sizes)) > 5
    assert all(24 <= h <= 48 and 32 <= w <= 64 for h, w in defects.sizes)
    i = defects.positive.index(True)
    assert defects.class_counts([i])[1] > 0
    j = defects.positive.index(False)
    assert defects.class_counts([j])[1] == 0
    h, w = defects.sizes[j]
    assert defects.raw_image(j).shape == (1, h, w) and defects.read(j).labels.shape == (h, w)


def test_split_is_stratified_partition(defects):
    splits = {name: defects.split(name) for name in ("train", "val", "test")}
    assert sorted(sum(splits.values(), [])) == list(range(40))
    pos = np.array(defects.positive)
    assert [int(pos[splits[s]].sum()) for s in ("train", "val", "test")] == [4, 2, 2]
    assert [len(splits[s]) for s in ("train", "val", "test")] == [20, 10, 10]
    assert defects.split("train+val") == sorted(splits["train"] + splits["val"])
    assert defects.split(" val + train ") == defects.split("train+val")
    assert defects.split("train+val+test") == defects.split("all")


def test_split_errors(em, tmp_path):
    with pytest.raises(DataError, match="unknown split 'bogus'"):
        em.split("bogus")
    with pytest.raises(DataError, match="unknown split 'bogus'.*union"):
        em.split("train+bogus")
    with pytest.raises(DataError, match="names a split twice"):
        em.split("train+train")
    nosplit = open_dataset(synth_em(tmp_path / "n.zarr", n_images=2, size=32))
    assert nosplit.split("train") == [0, 1] and nosplit.split("all") == [0, 1]
    with pytest.raises(DataError, match="split 'val' .* is empty"):
        nosplit.split("val")


def test_normalisation_over_train_split(em):
    train = em.split("train")
    pix = np.concatenate([em.raw_image(i).ravel() for i in train]).astype(np.float64)
    assert np.isclose(em.normalisation["mean"][0], pix.mean())
    assert np.isclose(em.normalisation["std"][0], pix.std())
    z = np.concatenate([em.read(i).image.ravel() for i in train])
    assert abs(z.mean()) < 1e-4 and abs(z.std() - 1) < 1e-4


def test_normalise_function():
    raw = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    out = normalise(raw, {"mean": [1.0, 10.0], "std": [2.0, 0.0]})
    assert out.dtype == np.float32
    assert np.allclose(out[0], (raw[0] - 1.0) / 2.0) and np.allclose(out[1], raw[1] - 10.0)
    with pytest.raises(DataError, match="channel"):
        normalise(raw, {"mean": [0.0], "std": [1.0]})


def test_read_augmented_reproducible_and_counts(em):
    spec = AugmentSpec(flip=True, rot90=True, rotate=True, max_angle=30)
    a = em.read(2, augment=spec, seed=5, epoch=1)
    b = em.read(2, augment=spec.to_dict(), seed=5, epoch=1)
    assert isinstance(a, Sample) and a.index == 2
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    plain = em.read(2, normalise=False)
    assert np.array_equal(plain.image, em.raw_image(2).astype(np.float32))
    aug_counts = em.class_counts([2], augment=spec, seed=5, epoch=1)
    assert aug_counts.tolist() == np.bincount(a.labels[a.labels != 255], minlength=2).tolist()
    assert aug_counts.dtype == np.int64 and aug_counts.sum() <= em.class_counts([2]).sum()
    with pytest.raises(DataError, match="out of range"):
        em.read(99)


def test_dataset_pickles_for_workers(em):
    clone = pickle.loads(pickle.dumps(em))
    assert np.array_equal(clone.read(1).image, em.read(1).image)


def test_synth_errors(tmp_path):
    with pytest.raises(DataError, match="size"):
        synth_em(tmp_path / "x.zarr", size="12x")
    with pytest.raises(OptionError, match="defect_fraction"):  # declared once in mpfpipe.options
        synth_defects(tmp_path / "x.zarr", defect_fraction=2)
    assert not (tmp_path / "x.zarr").exists()
