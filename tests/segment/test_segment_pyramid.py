"""The multiscale pyramid: 2 x 2 mean / mode against naive loops, every level independent of the block size,
valid NGFF 0.5 (ome-zarr-models), resumed with every level consistent with level 0."""
import numpy as np
import pytest
import zarr

from mpfpipe.arch import preset
from mpfpipe.errors import DataError
from mpfpipe.model import Model, save_model
from mpfpipe.params import init_params
from mpfpipe.segment import read_done, segment
from mpfpipe.segment import pyramid
from mpfpipe.segment.pyramid import auto_levels, halve_mean, halve_mode, level_shape


def _naive_windows(a, y, x):
    h, w = a.shape[-2:]
    return [a[..., yy, xx] for yy in (2 * y, 2 * y + 1) for xx in (2 * x, 2 * x + 1) if yy < h and xx < w]


def naive_mean(a):
    h, w = -(-a.shape[-2] // 2), -(-a.shape[-1] // 2)
    out = np.zeros(a.shape[:-2] + (h, w), np.float64)
    for y in range(h):
        for x in range(w):
            out[..., y, x] = np.mean(np.stack(_naive_windows(a.astype(np.float64), y, x)), axis=0)
    return out


def naive_mode(a):
    h, w = -(-a.shape[-2] // 2), -(-a.shape[-1] // 2)
    out = np.zeros((h, w), a.dtype)
    for y in range(h):
        for x in range(w):
            vals = [int(v) for v in _naive_windows(a, y, x)]
            counts = [vals.count(v) for v in vals]
            out[y, x] = vals[counts.index(max(counts))]  # the first value of the highest count
    return out


@pytest.mark.parametrize("shape", [(8, 6), (7, 5), (1, 3), (5, 1)])
def test_halving_against_naive_loops(shape):
    rng = np.random.default_rng(sum(shape))
    p = rng.random((2, 3, *shape)).astype(np.float32)
    assert halve_mean(p).dtype == np.float32
    assert np.abs(halve_mean(p) - naive_mean(p)).max() <= 1e-7
    q = rng.integers(0, 256, (2, *shape)).astype(np.uint8)
    assert np.array_equal(halve_mean(q), np.rint(naive_mean(q)).astype(np.uint8))
    lab = rng.integers(0, 3, shape).astype(np.uint8)
    lab[0, 0] = 255
    assert np.array_equal(halve_mode(lab[None])[0], naive_mode(lab))


def test_mode_ties_and_majorities():
    lab = np.array([[1, 0, 2, 2, 3, 4],
                    [0, 1, 5, 2, 5, 6]], np.uint8)
    # 1 0 / 0 1: a 2-2 tie keeps the top-left; 2 2 / 5 2: majority; four different values: top-left
    assert halve_mode(lab).tolist() == [[1, 2, 3]]
    assert auto_levels((3, 2048, 2048)) == 4 and auto_levels((1, 256, 9000)) == 1 and auto_levels((1, 257, 300)) == 2
    assert level_shape((3, 61, 83), 2) == (3, 16, 21)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    net = preset("steel", maps=3, hidden=6)
    path = tmp_path_factory.mktemp("model") / "steel.safetensors"
    save_model(Model(net, init_params(net, 3), class_names=["background", "defect"],
                     normalisation={"mean": [120.0], "std": [40.0]}), path)
    return path


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    vol = np.random.default_rng(4).integers(0, 255, size=(3, 45, 38)).astype(np.uint8)
    path = tmp_path_factory.mktemp("vol") / "v.zarr"
    zarr.save_array(str(path), vol)
    return path


def _levels(path, n):
    g = zarr.open_group(str(path), mode="r")
    return [(g[str(lv)][...], g[f"labels/segmentation/{lv}"][...]) for lv in range(n)]


def test_levels_equal_the_reduction_of_level0_for_any_block_size(model, volume, tmp_path, monkeypatch):
    """Level 1 made in its sources' tasks from memory (even blocks, enough of them: 16 x 16), or read back from
    disk by its own task (odd 13 x 7 blocks; one whole block with 2 workers): the same bits."""
    from ome_zarr_models.v05.image import Image
    from ome_zarr_models.v05.image_label import ImageLabel
    read_back = []
    real = pyramid.compute_level_block
    monkeypatch.setattr(pyramid, "compute_level_block", lambda w, lv, b, *a: read_back.append(lv) or real(w, lv, b, *a))
    outs = []
    for block, workers in [((1, 16, 16), 0), ((2, 13, 7), 0), ((3, 45, 38), 2)]:
        out = tmp_path / f"o{len(outs)}.zarr"
        res = segment(model, volume, out, block=block, workers=workers, threads=1, progress=False, levels=4)
        assert res.levels == 4 and res.pyramid_done == res.pyramid_blocks > 0 and res.failed == 0
        if not outs:  # the in-process run: level 1 never read back, levels 2 and 3 always
            assert sorted(read_back) == [2, 2, 2, 3, 3, 3]  # one level-2 and one level-3 block per section
        outs.append(out)
    ref = _levels(outs[0], 4)
    for lv in range(1, 4):
        p, lab = ref[lv]
        assert p.shape == (2, *level_shape((3, 45, 38), lv)) and lab.shape == level_shape((3, 45, 38), lv)
        assert np.abs(p - naive_mean(ref[lv - 1][0])).max() <= 1e-7
        assert np.array_equal(lab, np.stack([naive_mode(s) for s in ref[lv - 1][1]]))
    for out in outs[1:]:
        for (p, lab), (rp, rlab) in zip(_levels(out, 4), ref):
            assert np.array_equal(p, rp) and np.array_equal(lab, rlab)

    g = zarr.open_group(str(outs[1]), mode="r")
    assert g.attrs["mpfpipe"]["complete"] is True and g.attrs["mpfpipe"]["levels"] == 4
    assert all(read_done(outs[1], lv).all() for lv in range(4))
    assert zarr.open_array(str(outs[1]), path="2").chunks == (2, 2, 12, 7)
    image = Image.from_zarr(g)  # raises if the NGFF 0.5 metadata or the arrays do not match
    ds = image.ome_attributes.multiscales[0].datasets
    assert [d.path for d in ds] == ["0", "1", "2", "3"]
    assert ds[2].coordinateTransformations[0].scale == [1.0, 1.0, 4.0, 4.0]
    assert ds[2].coordinateTransformations[1].translation == [0.0, 0.0, 1.5, 1.5]
    label = ImageLabel.from_zarr(g["labels/segmentation"])
    assert [d.path for d in label.ome_attributes.multiscales[0].datasets] == ["0", "1", "2", "3"]
    # neuroglancer's place for channel names (NGFF 0.4) alongside the 0.5 one
    assert g.attrs["omero"] == g.attrs["ome"]["omero"]
    assert [c["label"] for c in g.attrs["omero"]["channels"]] == ["background", "defect"]


def test_resume_recomputes_every_unfinished_level(model, volume, tmp_path):
    out = tmp_path / "o.zarr"
    segment(model, volume, out, block=(1, 16, 16), workers=0, progress=False, levels=3)
    ref = _levels(out, 3)
    # as a kill after some blocks of each level: markers cleared, their data damaged, output not complete
    root = zarr.open_group(str(out), mode="r+")
    root["done"][1, 1:, :] = 0
    root["0"][:, 1, 16:] = 0.5
    root["done_1"][1] = 0
    root["1"][:, 1] = 0
    root["labels/segmentation/1"][1] = 7
    root["done_2"][...] = 0
    root["2"][...] = 0
    root.attrs["mpfpipe"] = {**root.attrs["mpfpipe"], "complete": False}
    res = segment(model, volume, out, block=(1, 16, 16), workers=0, progress=False, levels=3)
    assert (res.done, res.pyramid_done, res.pyramid_skipped) == (6, 4 + 3, 8)
    for (p, lab), (rp, rlab) in zip(_levels(out, 3), ref):
        assert np.array_equal(p, rp) and np.array_equal(lab, rlab)
    assert zarr.open_group(str(out), mode="r").attrs["mpfpipe"]["complete"] is True


def test_levels_validated(model, volume, tmp_path):
    with pytest.raises(DataError, match="levels must be an integer from 1 to 7"):
        segment(model, volume, tmp_path / "o.zarr", workers=0, progress=False, levels=8)
    assert not (tmp_path / "o.zarr").exists()


def test_2d_input_and_quantized_pyramid(model, tmp_path):
    from ome_zarr_models.v05.image import Image
    img = np.random.default_rng(0).integers(0, 255, (45, 37)).astype(np.uint8)
    zarr.save_array(str(tmp_path / "img.zarr"), img)
    segment(model, tmp_path / "img.zarr", tmp_path / "o.zarr", block=(1, 10, 12), workers=0, progress=False,
            levels=3, quantize=True)
    g = zarr.open_group(str(tmp_path / "o.zarr"), mode="r")
    assert [g[str(lv)].shape for lv in range(3)] == [(2, 45, 37), (2, 23, 19), (2, 12, 10)]
    for lv in (1, 2):
        p = g[str(lv)][...]
        assert p.dtype == np.uint8 and np.array_equal(p, np.rint(naive_mean(g[str(lv - 1)][...])).astype(np.uint8))
        assert np.array_equal(g[f"labels/segmentation/{lv}"][...], naive_mode(g[f"labels/segmentation/{lv - 1}"][...]))
    Image.from_zarr(g)
