"""3D models in `segment`: a volume segmented in blocks of different sizes on a real LocalCluster, with z halos,
gives the same output as the whole-volume dense pass; the pyramid halves z only where the voxels call for it
(NGFF 0.5 checked by ome-zarr-models); the ISBI stack as a volume dataset keeps its voxel size in the output."""
import numpy as np
import pytest
import zarr

from mpfpipe.arch import FC, Conv, Net, Pool
from mpfpipe.data import ingest
from mpfpipe.fragment import dense_forward
from mpfpipe.model import Model, save_model
from mpfpipe.params import init_params
from mpfpipe.segment import segment
from mpfpipe.segment.pyramid import halve_mean, halve_mode

# z window 4 (halo 1 before, 2 after), pools (1,2,2) and (2,1,1): strides differ per axis
NET = Net((Conv((2, 3, 3), 3), Pool((1, 2, 2)), Conv((2, 2, 2), 4), Pool((2, 1, 1)), FC(5), FC(2, "linear")))
NORM = {"mean": [100.0], "std": [40.0]}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "m3.safetensors"
    return save_model(Model(NET, init_params(NET, 3), class_names=["cell", "membrane"], normalisation=NORM), path)


@pytest.fixture(scope="module")
def volume():
    return np.random.default_rng(4).integers(0, 256, (7, 23, 19)).astype(np.uint8)


def test_any_block_size_gives_the_whole_volume_dense_pass(model, volume, tmp_path):
    assert NET.halo3[0] == (1, 2) and NET.stride3 == (2, 2, 2)
    zarr.save_array(str(tmp_path / "v.zarr"), volume)
    whole = dense_forward(NET, init_params(NET, 3), (volume[None].astype(np.float32) - 100.0) / 40.0)
    outs = []
    for block, workers in (((2, 8, 16), 2), ((3, 23, 5), 0), ((7, 23, 19), 0)):
        out = tmp_path / f"o{len(outs)}.ome.zarr"
        res = segment(model, tmp_path / "v.zarr", out, block=block, workers=workers, threads=1, progress=False,
                      levels=1)
        assert res.failed == 0 and res.done == res.blocks
        outs.append(np.asarray(zarr.open_array(str(out), path="0")))
    assert outs[0].shape == (2, 7, 23, 19)
    assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[0], outs[2])
    assert np.abs(outs[0] - whole).max() <= 2e-6  # the blocks' float32 passes against one whole-volume pass


def test_pyramid_halves_z_for_isotropic_voxels(model, tmp_path):
    from ome_zarr_models.v05.image import Image
    from ome_zarr_models.v05.image_label import ImageLabel
    rng = np.random.default_rng(2)
    np.save(tmp_path / "i.npy", rng.integers(0, 256, (9, 40, 36)).astype(np.uint8))
    np.save(tmp_path / "l.npy", (rng.random((9, 40, 36)) < 0.3).astype(np.uint8))
    iso = ingest([tmp_path / "i.npy", tmp_path / "l.npy"], tmp_path / "iso.zarr", volume=True,
                 voxel_size="8,8,8", voxel_unit="nanometer")
    out = tmp_path / "o.ome.zarr"
    res = segment(model, iso, out, block=(2, 16, 16), workers=0, progress=False, levels=3)
    assert res.failed == 0 and res.pyramid_done == res.pyramid_blocks
    g = zarr.open_group(str(out), mode="r")
    assert g.attrs["mpfpipe"]["z_levels"] == [1, 2]
    assert [g[str(lv)].shape for lv in range(3)] == [(2, 9, 40, 36), (2, 5, 20, 18), (2, 3, 10, 9)]
    for lv in (1, 2):
        assert np.array_equal(g[str(lv)][...], halve_mean(g[str(lv - 1)][...], z=True))
        assert np.array_equal(g[f"labels/segmentation/{lv}"][...], halve_mode(g[f"labels/segmentation/{lv - 1}"][...],
                                                                               z=True))
    image = Image.from_zarr(g)
    ds = image.ome_attributes.multiscales[0].datasets
    assert ds[2].coordinateTransformations[0].scale == [1.0, 32.0, 32.0, 32.0]
    assert ds[1].coordinateTransformations[1].translation == [0.0, 4.0, 4.0, 4.0]
    assert [a.unit for a in image.ome_attributes.multiscales[0].axes[1:]] == ["nanometer"] * 3
    ImageLabel.from_zarr(g["labels/segmentation"])
    from mpfpipe.segment.verify import damaged_level_blocks
    assert damaged_level_blocks(out) == []  # every level's blocks found where z_levels puts them, checksums match
    zarr.open_group(str(out), mode="r+")["labels/segmentation/2"][2, 0, 0] = 9  # damage one level-2 block
    assert [(lv, idx) for lv, idx, _ in damaged_level_blocks(out)] == [(2, (1, 0, 0))]


def test_isbi_volume_keeps_z_and_its_voxel_size(model, shared_data, tmp_path):
    from ome_zarr_models.v05.image import Image
    root = shared_data / "isbi2012"
    ds = ingest([root / "train-volume.tif", root / "train-labels.tif"], tmp_path / "isbi3d.zarr", positive=0,
                volume=True, voxel_size="50,4,4", voxel_unit="nanometer")
    out = tmp_path / "o.ome.zarr"
    res = segment(model, ds, out, block=(20, 512, 512), workers=0, progress=False)
    g = zarr.open_group(str(out), mode="r")
    assert res.levels == 2 and "z_levels" not in g.attrs["mpfpipe"]  # 50 nm sections: z kept at 8 nm pixels
    assert [g[str(lv)].shape for lv in range(2)] == [(2, 20, 512, 512), (2, 20, 256, 256)]
    scales = [d.coordinateTransformations[0].scale for d in Image.from_zarr(g).ome_attributes.multiscales[0].datasets]
    assert scales == [[1.0, 50.0, 4.0, 4.0], [1.0, 50.0, 8.0, 8.0]]


def test_tta_turns_y_x_of_a_3d_model_and_any_block_size_agrees(model, volume, tmp_path):
    """--tta with a 3D model: the mean over the 8 flips and turns of y-x (z never flipped) of the whole-volume
    pass, whatever the blocks (the uneven y-x halo (2, 3) is read symmetric and cropped per transform)."""
    from mpfpipe.segment.blocks import D4, d4, d4_inverse
    zarr.save_array(str(tmp_path / "v.zarr"), volume)
    x = (volume[None].astype(np.float32) - 100.0) / 40.0
    p = init_params(NET, 3)
    want = np.mean([d4_inverse(dense_forward(NET, p, np.ascontiguousarray(d4(x, t))), t) for t in D4], axis=0)
    outs = []
    for block in ((3, 10, 7), (7, 23, 19)):
        out = tmp_path / f"t{len(outs)}.ome.zarr"
        segment(model, tmp_path / "v.zarr", out, block=block, workers=0, progress=False, levels=1, tta=True)
        outs.append(np.asarray(zarr.open_array(str(out), path="0")))
    assert np.array_equal(outs[0], outs[1]) and np.abs(outs[0] - want).max() <= 2e-6


def test_resume_after_a_kill_redoes_the_unfinished_blocks_of_every_z_level(model, tmp_path):
    rng = np.random.default_rng(5)
    np.save(tmp_path / "i.npy", rng.integers(0, 256, (6, 24, 20)).astype(np.uint8))
    np.save(tmp_path / "l.npy", (rng.random((6, 24, 20)) < 0.3).astype(np.uint8))
    iso = ingest([tmp_path / "i.npy", tmp_path / "l.npy"], tmp_path / "iso.zarr", volume=True, voxel_size="1,1,1",
                 voxel_unit="micrometer")
    out = tmp_path / "o.ome.zarr"
    kw = dict(block=(2, 8, 8), workers=0, progress=False, levels=3)
    segment(model, iso, out, **kw)
    g = zarr.open_group(str(out), mode="r")
    ref = [np.asarray(g[str(lv)]) for lv in range(3)]
    root = zarr.open_group(str(out), mode="r+")  # as a kill: markers cleared, their data damaged, not complete
    root["done"][1:, 1] = 0
    root["0"][:, 2:, 8:16] = 0.5
    root["done_1"][0] = 0
    root["1"][...] = 0
    root["done_2"][...] = 0
    root.attrs["mpfpipe"] = {**root.attrs["mpfpipe"], "complete": False}
    res = segment(model, iso, out, **kw)
    # level 0: grid 3x3x3, 6 blocks redone; level 1 (3, 12, 10): all 8 blocks, their chunks zeroed (the checksums
    # find them); level 2 (2, 6, 5): its one block
    assert (res.done, res.pyramid_done) == (2 * 3, 8 + 1) and res.skipped == 3 * 3 * 3 - 6
    assert all(np.array_equal(np.asarray(g[str(lv)]), r) for lv, r in enumerate(ref))
