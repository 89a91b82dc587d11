"""HDF5 inputs (``FILE.h5:DATASET``): output identical to the same voxels in Zarr, on a local cluster too; the
voxel size from the file; bad files and dataset names as one line from the CLI."""
import h5py
import numpy as np
import pytest
import zarr

from mpfpipe.arch import preset
from mpfpipe.cli import main
from mpfpipe.model import Model, save_model
from mpfpipe.params import init_params
from mpfpipe.segment import open_volume, segment


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    d = tmp_path_factory.mktemp("h5")
    net = preset("steel", maps=3, hidden=6)
    save_model(Model(net, init_params(net, 9), normalisation={"mean": [120.0], "std": [40.0]}),
               d / "m.safetensors")
    vol = np.random.default_rng(6).integers(0, 255, size=(3, 45, 38)).astype(np.uint8)
    with h5py.File(d / "sample.h5", "w") as f:  # CREMI's layout: chunked, compressed, with a resolution
        raw = f.create_dataset("volumes/raw", data=vol, chunks=(1, 16, 16), compression="gzip")
        raw.attrs["resolution"] = [40.0, 4.0, 4.0]
        f.create_dataset("volumes/labels/clefts", data=np.zeros_like(vol, np.uint64))
    zarr.save_array(str(d / "v.zarr"), vol)
    return d


def _all(path, levels):
    g = zarr.open_group(str(path), mode="r")
    return [g[a][...] for lv in range(levels) for a in (str(lv), f"labels/segmentation/{lv}")]


def test_hdf5_output_identical_to_zarr(job, tmp_path):
    h5 = f"{job / 'sample.h5'}:volumes/raw"
    vol = open_volume(h5)
    assert (vol.kind, vol.shape, vol.array, vol.scale) == ("hdf5", (3, 45, 38), "volumes/raw", [40.0, 4.0, 4.0])
    segment(job / "m.safetensors", job / "v.zarr", tmp_path / "z.zarr", block=(1, 20, 20), workers=0,
            progress=False, levels=2)
    segment(job / "m.safetensors", h5, tmp_path / "h0.zarr", block=(1, 20, 20), workers=0, progress=False, levels=2)
    segment(job / "m.safetensors", h5, tmp_path / "h2.zarr", block=(2, 13, 21), workers=2, threads=1,
            progress=False, levels=2)
    ref = _all(tmp_path / "z.zarr", 2)
    for out in ("h0.zarr", "h2.zarr"):
        assert all(np.array_equal(a, b) for a, b in zip(_all(tmp_path / out, 2), ref))
    ms = zarr.open_group(str(tmp_path / "h0.zarr"), mode="r").attrs["ome"]["multiscales"][0]
    assert ms["datasets"][1]["coordinateTransformations"][0]["scale"] == [1.0, 40.0, 8.0, 8.0]


@pytest.mark.parametrize("source, message", [
    ("missing.h5:volumes/raw", "input {d}/missing.h5 not found"),
    ("sample.h5:volumes/rawx", "{d}/sample.h5 has no dataset 'volumes/rawx'; its datasets: volumes/labels/clefts, "
                               "volumes/raw"),
    ("sample.h5:volumes", "{d}/sample.h5:volumes is a group, not a dataset; datasets in it: "
                          "volumes/labels/clefts, volumes/raw"),
    ("sample.h5", "{d}/sample.h5 holds 2 datasets (volumes/labels/clefts, volumes/raw): name one as "
                  "{d}/sample.h5:DATASET"),
    ("text.h5:raw", "{d}/text.h5: not a readable HDF5 file"),
])
def test_bad_hdf5_sources_one_line(job, capsys, source, message):
    (job / "text.h5").write_text("not hdf5")
    with pytest.raises(SystemExit) as exc:
        main(["segment", str(job / "m.safetensors"), f"{job}/{source}", str(job / "o.zarr"), "--workers", "0",
              "--quiet"])
    err = capsys.readouterr().err
    assert exc.value.code == 1 and err.count("\n") == 1 and message.format(d=job) in err, err
    assert not (job / "o.zarr").exists()
