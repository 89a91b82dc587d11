"""Ingest of the real layouts in ../shared/data, checked against the source files pixel for pixel.

Skipped (with the reason) on a machine without ../shared/data beside the repository.
"""
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from mpfpipe.data import ingest, open_dataset
from mpfpipe.data.sources import resolve_sources

DATA = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data").resolve()


def need(sub):
    path = DATA / sub
    if not path.exists():
        pytest.skip(f"real data {path} is absent (it lives in ../shared/data beside the repository)")
    return path


def test_isbi_stack(tmp_path):
    root = need("isbi2012")
    out = ingest([root / "train-volume.tif", root / "train-labels.tif"], tmp_path / "isbi.zarr", positive=0,
                 class_names=["cell", "membrane"], split=(0.6, 0.2, 0.2))
    ds = open_dataset(out)
    vol = tifffile.imread(root / "train-volume.tif")
    lab = tifffile.imread(root / "train-labels.tif")
    assert ds.n_images == 20 and ds.sizes == [(512, 512)] * 20 and ds.dtype == np.uint8
    for i in range(20):
        assert np.array_equal(ds.raw_image(i)[0], vol[i])
        assert np.array_equal(ds.raw_labels(i), (lab[i] == 0).astype(np.uint8))
    frac = ds.class_counts()[1] / ds.class_counts().sum()
    assert 0.15 < frac < 0.3  # membranes are ~22 %
    assert ds.split_sizes() == {"train": 12, "val": 4, "test": 4}


def test_magnetic_tile_folders_variable_sizes(tmp_path):
    root = need("magnetic_tile")
    out = ingest([root], tmp_path / "mt.zarr", mask_threshold=127, split=(0.5, 0.25, 0.25), seed=0)
    ds = open_dataset(out)
    assert ds.n_images == 336 and ds.channels == 1 and ds.class_names == ["background", "defect"]
    assert len(set(ds.sizes)) > 50
    assert sum(ds.positive) == 95
    for i, name in enumerate(ds.names):
        img = np.asarray(Image.open(root / name))
        mask = np.asarray(Image.open((root / name).with_suffix(".png")))
        assert ds.sizes[i] == img.shape
        assert np.array_equal(ds.raw_image(i)[0], img), name
        assert np.array_equal(ds.raw_labels(i), (mask > 127).astype(np.uint8)), name
    assert set(ds.attrs["groups"]) == {f"MT_{c}" for c in ("Blowhole", "Break", "Crack", "Fray", "Free", "Uneven")}
    pos = np.array(ds.positive)
    for split in ("train", "val", "test"):  # the rare defective images are in every split
        assert pos[ds.split(split)].sum() >= 20


def test_neu_seg_layout(tmp_path):
    root = need("neu_seg")
    items, layout = resolve_sources([root])
    assert len(items) == 500 and {it.group for it in items} == {"train", "val"}
    out = ingest([root / "val"], tmp_path / "neu.zarr",
                 class_names=["background", "inclusion", "patches", "scratches"])
    ds = open_dataset(out)
    assert ds.n_images == 100 and ds.channels == 1 and ds.n_classes == 4 and all(ds.positive)
    for i, name in enumerate(ds.names):
        rgb = np.asarray(Image.open(root / "val" / name))
        mask = np.asarray(Image.open(root / "val" / "masks" / (Path(name).stem + ".png")))
        assert np.array_equal(ds.raw_image(i)[0], rgb[..., 0])
        assert np.array_equal(ds.raw_labels(i), mask)
