"""Datasets that hold a volume (``ingest --volume``): the ISBI 2012 stack with its voxel size, z chunks and z
section splits, HDF5 volumes, the splits computed by hand, damaged chunks named, and bad input as one line."""
import subprocess
import sys

import h5py
import numpy as np
import pytest
import tifffile

from mpfpipe.data import ingest, open_dataset
from mpfpipe.data.volume import open_volume
from mpfpipe.data.volumeset import chunk_shape, volume_splits, z_runs
from mpfpipe.errors import DataError, ValueFormatError
from mpfpipe.values import parse_sections

# the 2D membrane workflow's test sections (stratified split 0.6,0.2,0.2, seed 0, of 20 positive slices)
SECTIONS = "train=0-1,4-8,11-15,val=3,9,16,19,test=2,10,17,18"


def test_isbi_volume(shared_data, tmp_path):
    root = shared_data / "isbi2012"
    out = ingest([root / "train-volume.tif", root / "train-labels.tif"], tmp_path / "isbi3d.zarr", positive=0,
                 class_names=["cell", "membrane"], volume=True, voxel_size="50,4,4", voxel_unit="nanometer",
                 sections=SECTIONS)
    ds = open_dataset(out)
    assert ds.split("train") == [0, 1, 4, 5, 6, 7, 8, 11, 12, 13, 14, 15]
    assert ds.split("test") == [2, 10, 17, 18]
    assert ds.z_runs("train") == [[0, 2], [4, 9], [11, 16]] and ds.z_runs("val") == [[3, 4], [9, 10], [16, 17],
                                                                                      [19, 20]]
    assert ds.volume == {"shape": [20, 512, 512], "voxel_size": [50.0, 4.0, 4.0], "unit": "nanometer",
                         "chunks": [8, 512, 512],
                         "z_runs": {"train": [[0, 2], [4, 9], [11, 16]], "val": [[3, 4], [9, 10], [16, 17], [19, 20]],
                                    "test": [[2, 3], [10, 11], [17, 19]]}}
    assert ds.group["images"].chunks == (8, 1, 512, 512) and ds.group["labels"].chunks == (8, 512, 512)
    vol = tifffile.imread(root / "train-volume.tif")
    lab = tifffile.imread(root / "train-labels.tif")
    image, labels = ds.read_block(4, 9, normalise=False)
    assert image.shape == (1, 5, 512, 512) and np.array_equal(image[0], vol[4:9])
    assert np.array_equal(labels, (lab[4:9] == 0).astype(np.uint8))
    assert np.array_equal(ds.group["images"][:, 0], vol)  # what any Zarr reader sees
    # segment's view of the dataset keeps the voxel size (the pyramid needs it)
    v = open_volume(out)
    assert v.shape == (20, 512, 512) and v.scale == [50.0, 4.0, 4.0] and v.units == {a: "nanometer" for a in "zyx"}
    assert np.array_equal(v.read(7, 10, (0, 5), (0, 5))[:, 0], vol[7:10, :5, :5])
    # a missing chunk of 8 sections: every section in it is named as missing, with the chunk's file
    (out / "images" / "c" / "1" / "0" / "0" / "0").unlink()
    with pytest.raises(DataError, match=r"images chunk of image 8 \(.*images/c/1/0/0/0\) is missing"):
        ds.read_block(8, 10)
    assert ds.raw_image(7)[0, 0, 0] == vol[7, 0, 0]  # the chunk before is intact


def test_hdf5_volume_voxel_size_and_fraction_split(tmp_path):
    rng = np.random.default_rng(5)
    raw = rng.integers(0, 255, (10, 12, 14)).astype(np.uint8)
    lab = (rng.random((10, 12, 14)) < 0.3).astype(np.uint8)
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f.create_dataset("raw", data=raw).attrs["element_size_um"] = [0.05, 0.004, 0.004]
        f.create_dataset("lab", data=lab)
    out = ingest([f"{tmp_path / 'v.h5'}:raw", f"{tmp_path / 'v.h5'}:lab"], tmp_path / "v.zarr", volume=True,
                 split="0.6,0.2,0.2", downsample=2)
    ds = open_dataset(out)
    # contiguous z ranges in order, 6/2/2 sections; y and x halved, their voxel size doubled
    assert ds.attrs["splits"] == {"train": [0, 1, 2, 3, 4, 5], "val": [6, 7], "test": [8, 9]}
    assert ds.volume["shape"] == [10, 6, 7] and ds.volume["chunks"] == [8, 6, 7]
    assert ds.volume["voxel_size"] == [0.05, 0.008, 0.008] and ds.volume["unit"] == "micrometer"
    image, labels = ds.read_block(8, 10, normalise=False)
    assert image[0, 1, 0, 0] == np.rint(raw[9, :2, :2].mean())
    assert ds.group["images"].chunks == (8, 1, 6, 7)
    assert np.array_equal(ds.group["labels"][9], ds.raw_labels(9))


def test_splits_and_runs_by_hand():
    assert z_runs([6, 0, 1, 4, 5]) == [[0, 2], [4, 7]]
    assert z_runs([]) == []
    assert parse_sections("train=0-1,4,val=3,test=2") == {"train": [0, 1, 4], "val": [3], "test": [2]}
    assert parse_sections({"train": "5-7", "test": [1, 2]}) == {"train": [5, 6, 7], "val": [], "test": [1, 2]}
    # 7 x (0.5, 0.25, 0.25) = 3.5, 1.75, 1.75: floors 3, 1, 1, the two largest remainders (0.75) add one each
    assert volume_splits(7, split=(0.5, 0.25, 0.25)) == {"train": [0, 1, 2], "val": [3, 4], "test": [5, 6]}
    assert volume_splits(3) == {"train": [0, 1, 2], "val": [], "test": []}
    assert chunk_shape(20, 2048, 3000) == (8, 1024, 1024) and chunk_shape(3, 100, 50) == (3, 100, 50)
    for bad, msg in (("train=0-3,val=3", "section 3 is in both train and val"), ("0-3", "start with a split"),
                     ("train=1,bogus=2", "unknown split 'bogus'"), ("val=1", "train split has no section"),
                     ("train=a-b", "bad section list of train")):
        with pytest.raises(ValueFormatError, match=msg):
            parse_sections(bad)
    with pytest.raises(DataError, match="cannot split 2 section"):
        volume_splits(2, split=(0.5, 0.25, 0.25))


def _stack(tmp_path, shape=(4, 9, 9)):
    rng = np.random.default_rng(1)
    np.save(tmp_path / "i.npy", rng.integers(0, 255, shape).astype(np.uint8))
    np.save(tmp_path / "l.npy", (rng.random(shape) < 0.5).astype(np.uint8))
    return [str(tmp_path / "i.npy"), str(tmp_path / "l.npy")]


@pytest.mark.parametrize("args, code, message", [
    (["--sections", "train=0-9"], 1, "error: sections [4, 5, 6, 7, 8, 9] are outside the volume's 4 sections"),
    (["--voxel-size", "50,4"], 2, "error: voxel size '50,4': give three positive Z,Y,X sizes"),
    (["--split", "0.5,0.5", "--sections", "train=1"], 2, "error: give either split fractions or the sections"),
    (["--voxel-unit", "nm"], 2, "error: Invalid value for '--voxel-unit': 'nm' is not one of"),
])
def test_cli_bad_volume_input(tmp_path, args, code, message):
    r = subprocess.run([sys.executable, "-m", "mpfpipe", "ingest", *_stack(tmp_path), str(tmp_path / "o.zarr"),
                        "--volume", "--no-progress", *args], capture_output=True, text=True)
    assert r.returncode == code and r.stderr.startswith(message) and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "o.zarr").exists()


def test_cli_volume_options_need_volume_and_a_stack(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mpfpipe", "ingest", *_stack(tmp_path), str(tmp_path / "o.zarr"),
                        "--sections", "train=0-3"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr == "error: sections, voxel size and voxel unit describe a volume: add " \
                                             "--volume\n"
    folder = tmp_path / "f"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    from PIL import Image
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "images" / "a.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "masks" / "a.png")
    r = subprocess.run([sys.executable, "-m", "mpfpipe", "ingest", str(folder), str(tmp_path / "o.zarr"), "--volume"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.startswith("error: --volume needs a stack") and r.stderr.count("\n") == 1


def test_cli_volume_summary(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mpfpipe", "ingest", *_stack(tmp_path), str(tmp_path / "o.zarr"),
                        "--volume", "--voxel-size", "40,5,5", "--voxel-unit", "nanometer", "--sections",
                        "train=0-1,val=2,test=3", "--no-progress"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == ("volume 4x9x9 (z, y, x), voxel 40x5x5 nanometer, chunks 4x9x9; sections "
                                         "train 0-1; val 2; test 3")
