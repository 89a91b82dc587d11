"""A dataset whose split lists an image it does not have (edited by hand, or written by another tool): one line
naming the dataset, the split and the bad index, from the API and from `mpfpipe train`, instead of
``IndexError: list index out of range``."""
from __future__ import annotations

import pytest
import zarr

from mpfpipe.cli import main
from mpfpipe.data import open_dataset, synth_em
from mpfpipe.errors import DataError


@pytest.fixture
def dataset(tmp_path):
    path = synth_em(tmp_path / "d.zarr", n_images=3, size=(32, 32), split=(2 / 3, 1 / 3), seed=0)
    group = zarr.open_group(str(path), mode="r+")
    splits = dict(group.attrs["splits"])
    assert sorted(splits["train"] + splits["val"]) == [0, 1, 2]
    splits["val"] = [*splits["val"], 7]
    group.attrs["splits"] = splits
    return path


def test_the_split_error_names_the_dataset_the_split_and_the_index(dataset):
    ds = open_dataset(dataset)
    want = f"{dataset}: split 'val' lists image 7, but the dataset has 3 image(s) (indices 0..2)"
    for name in ("val", "train+val"):
        with pytest.raises(DataError) as exc:
            ds.split(name)
        assert str(exc.value) == want
    assert len(ds.split("train")) == 2  # the other split is fine


def test_train_says_it_in_one_line(dataset, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", str(dataset), "--net", "steel", "--maps", "2", "--hidden", "3", "--epochs", "1",
              "--out", str(tmp_path / "m.safetensors"), "--no-progress"])
    err = capsys.readouterr().err
    assert exc.value.code == 1
    assert err.strip() == (f"error: {dataset}: split 'val' lists image 7, but the dataset has 3 "
                                            "image(s) (indices 0..2)")
    assert "Traceback" not in err and "IndexError" not in err
    assert not (tmp_path / "m.safetensors").exists()
