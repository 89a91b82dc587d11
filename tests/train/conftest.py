"""Fixtures of the training tests: small real ISBI crops as a dataset, small nets, real LocalClusters."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest

CROP = 48
# (slice, row, col) of the crops: different slices and places, so the images differ
CROPS = [(0, 0, 0), (3, 100, 200), (6, 300, 50), (9, 200, 400), (12, 400, 300), (15, 50, 450), (18, 250, 250)]


@pytest.fixture(scope="session")
def isbi_crops(shared_data, tmp_path_factory):
    """A 7-image dataset of 48x48 crops of the ISBI 2012 training volume (classes cell, membrane)."""
    import tifffile

    from mpfpipe.data import ingest, open_dataset

    root = tmp_path_factory.mktemp("isbi_crops")
    vol = tifffile.imread(shared_data / "isbi2012" / "train-volume.tif")
    lab = tifffile.imread(shared_data / "isbi2012" / "train-labels.tif")
    img = np.stack([vol[z, r:r + CROP, c:c + CROP] for z, r, c in CROPS])
    lbl = np.stack([lab[z, r:r + CROP, c:c + CROP] for z, r, c in CROPS])
    np.save(root / "img.npy", img)
    np.save(root / "lab.npy", lbl)
    out = ingest([root / "img.npy", root / "lab.npy"], root / "crops.zarr", positive=0,
                 class_names=["cell", "membrane"], split=(0.6, 0.4), seed=0)
    ds = open_dataset(out)
    assert len(ds.split("train")) >= 4 and len(ds.split("val")) >= 2
    return out


@pytest.fixture(scope="session")
def small_net():
    from mpfpipe.arch import preset
    return preset("steel", maps=4, hidden=8)


@contextlib.contextmanager
def local_cluster(workers: int, threads: int = 1):
    from mpfpipe.cluster import connect
    handle = connect(workers=workers, threads=threads)
    try:
        yield handle
    finally:
        handle.close()


@pytest.fixture(scope="session")
def make_cluster():
    """``with make_cluster(workers, threads=1) as handle:`` a fresh LocalCluster."""
    return local_cluster


@pytest.fixture(scope="session")
def cluster2():
    """Two worker processes x one thread, shared by the tests that do not disturb it."""
    with local_cluster(2) as handle:
        yield handle
