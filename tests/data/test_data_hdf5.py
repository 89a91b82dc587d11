"""ingest of HDF5 stacks (``FILE.h5:DATASET``): the same dataset as from the same arrays in .npy / TIFF, masks
and channels-last images too, and bad file / dataset names as one clear message."""
import h5py
import numpy as np
import pytest

from mpfpipe.data import ingest, open_dataset
from mpfpipe.data.hdf5 import parse_spec
from mpfpipe.errors import DataError


def _same(a, b):
    da, db = open_dataset(a), open_dataset(b)
    assert da.sizes == db.sizes and da.class_names == db.class_names
    for key in ("mean", "std"):  # summed in another order for a strided (moved-axis) .npy: last-digit differences
        assert np.allclose(da.normalisation[key], db.normalisation[key], rtol=1e-13, atol=0)
    for key in ("images", "labels"):
        assert np.array_equal(da.group[key][...], db.group[key][...])


def test_hdf5_stacks_equal_npy_stacks(tmp_path):
    rng = np.random.default_rng(3)
    vol = rng.integers(0, 65535, (4, 14, 11)).astype(np.uint16)
    lab = np.where(rng.random((4, 14, 11)) < 0.3, 0, 255).astype(np.uint8)
    mask = (rng.random((4, 14, 11)) < 0.8).astype(np.uint8)
    rgb = rng.integers(0, 255, (4, 14, 11, 3)).astype(np.uint8)
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f.create_dataset("volumes/raw", data=vol, chunks=(1, 7, 11), compression="gzip")
        f.create_dataset("volumes/labels/membranes", data=lab)
        f.create_dataset("masks", data=mask)
        f.create_dataset("rgb", data=rgb)
    for name, arr in (("v", vol), ("l", lab), ("m", mask), ("rgb", rgb)):
        np.save(tmp_path / f"{name}.npy", arr)
    h5 = tmp_path / "s.h5"
    ingest([f"{h5}:volumes/raw", f"{h5}:/volumes/labels/membranes", f"{h5}:masks"], tmp_path / "h.zarr",
           positive=0)
    ingest([tmp_path / "v.npy", tmp_path / "l.npy", tmp_path / "m.npy"], tmp_path / "n.zarr", positive=0)
    _same(tmp_path / "h.zarr", tmp_path / "n.zarr")
    assert open_dataset(tmp_path / "h.zarr").names[2] == "s.h5:volumes/raw[2]"
    # channels-last images, an HDF5 image stack beside a .npy label stack
    ingest([f"{h5}:rgb", tmp_path / "l.npy"], tmp_path / "hr.zarr", positive=0)
    ingest([tmp_path / "rgb.npy", tmp_path / "l.npy"], tmp_path / "nr.zarr", positive=0)
    _same(tmp_path / "hr.zarr", tmp_path / "nr.zarr")
    assert open_dataset(tmp_path / "hr.zarr").channels == 3


def test_bad_hdf5_stacks(tmp_path):
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f.create_dataset("raw", data=np.zeros((2, 8, 8), np.uint8))
        f.create_dataset("lab", data=np.zeros((3, 8, 8), np.uint8))
    h5 = tmp_path / "s.h5"
    with pytest.raises(DataError, match=r"s.h5 has no dataset 'labels'; its datasets: lab, raw"):
        ingest([f"{h5}:raw", f"{h5}:labels"], tmp_path / "o.zarr")
    with pytest.raises(DataError, match=r"s.h5:raw has 2 images but s.h5:lab has 3"):
        ingest([f"{h5}:raw", f"{h5}:lab"], tmp_path / "o.zarr")
    with pytest.raises(DataError, match=r"missing.h5 not found"):
        ingest([f"{tmp_path}/missing.h5:raw", f"{h5}:lab"], tmp_path / "o.zarr")
    assert not (tmp_path / "o.zarr").exists()
    assert parse_spec("a/b.H5:x/y") == ("a/b.H5", "x/y") and parse_spec("a.zarr") is None
