"""segment(): exactness on a real ISBI crop, independence of block size and workers, OME-Zarr output, resume,
overwrite protection, input kinds and early errors."""
import json

import numpy as np
import pytest
import zarr

from mpfpipe.arch import preset
from mpfpipe.errors import DataError, OutputExistsError
from mpfpipe.fragment import dense_forward
from mpfpipe.model import Model, save_model
from mpfpipe.params import init_params
from mpfpipe.segment import read_done, segment
from mpfpipe.segment.blocks import normalise

NORM = {"mean": [120.0], "std": [40.0]}


@pytest.fixture(scope="module")
def n4_model(tmp_path_factory):
    net = preset("n4", maps=3, hidden=6)
    path = tmp_path_factory.mktemp("model") / "n4.safetensors"
    save_model(Model(net, init_params(net, 7), class_names=["cell", "membrane"], normalisation=NORM,
                     provenance={"note": "random weights for tests"}), path)
    return path


@pytest.fixture(scope="module")
def steel_model(tmp_path_factory):
    net = preset("steel", maps=3, hidden=6)
    path = tmp_path_factory.mktemp("model") / "steel.safetensors"
    save_model(Model(net, init_params(net, 3), normalisation=NORM), path)
    return path


@pytest.fixture(scope="module")
def isbi_crop(shared_data, tmp_path_factory):
    import tifffile
    vol = tifffile.imread(shared_data / "isbi2012" / "test-volume.tif", key=[3, 4])[:, 200:261, 150:233]
    path = tmp_path_factory.mktemp("vol") / "isbi.zarr"
    zarr.save_array(str(path), np.ascontiguousarray(vol))
    return path, vol


def _probs(path):
    return zarr.open_group(str(path), mode="r")["0"][...]


def _labels(path):
    return zarr.open_group(str(path), mode="r")["labels/segmentation/0"][...]


def test_blockwise_equals_single_image_dense_pass_on_isbi(n4_model, isbi_crop, tmp_path):
    from mpfpipe.model import load_model
    src, vol = isbi_crop
    model = load_model(n4_model)
    ref = np.stack([dense_forward(model.net, model.params, normalise(s[None], NORM)) for s in vol], axis=1)
    outs = {}
    for block in [(1, 61, 83), (1, 23, 37), (2, 30, 17)]:  # 23, 37, 30, 17: not multiples of the stride 16
        out = tmp_path / f"seg_{'_'.join(map(str, block))}.zarr"
        res = segment(n4_model, src, out, block=block, workers=0, progress=False)
        assert res.failed == 0 and res.done == res.blocks and res.voxels == vol.size
        outs[block] = out
        assert np.abs(_probs(out) - ref).max() <= 1e-6
        assert np.array_equal(_labels(out), ref.argmax(0))
    attrs = zarr.open_group(str(outs[(1, 23, 37)]), mode="r").attrs.asdict()
    assert attrs["mpfpipe"]["complete"] is True
    assert attrs["mpfpipe"]["model"]["provenance"]["note"] == "random weights for tests"
    assert zarr.open_array(str(outs[(1, 23, 37)]), path="0").chunks == (2, 1, 23, 37)


def test_dask_workers_give_the_same_output_and_ome_reads_back(steel_model, tmp_path):
    rng = np.random.default_rng(0)
    vol = rng.integers(0, 255, size=(3, 40, 52)).astype(np.uint8)
    zarr.save_array(str(tmp_path / "v.zarr"), vol)
    a = segment(steel_model, tmp_path / "v.zarr", tmp_path / "a.zarr", block=(1, 40, 52), workers=0, progress=False)
    b = segment(steel_model, tmp_path / "v.zarr", tmp_path / "b.zarr", block=(2, 13, 19), workers=2, threads=1,
                progress=False)
    assert a.done == 3 and b.done == 2 * 4 * 3 and b.peak_memory_per_worker
    assert np.abs(_probs(tmp_path / "a.zarr") - _probs(tmp_path / "b.zarr")).max() <= 1e-6
    assert np.array_equal(_labels(tmp_path / "a.zarr"), _labels(tmp_path / "b.zarr"))

    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Multiscales, Reader
    nodes = list(Reader(parse_url(str(tmp_path / "b.zarr")))())
    image = nodes[0]
    assert image.metadata["name"] == "probabilities"
    assert [ax["name"] for ax in image.metadata["axes"]] == ["c", "z", "y", "x"]
    assert image.data[0].shape == (2, 3, 40, 52)
    label = [n for n in nodes if any(isinstance(s, Label) for s in n.specs)][0]
    assert any(isinstance(s, Multiscales) for s in label.specs)
    assert np.array_equal(np.asarray(label.data[0]), _labels(tmp_path / "a.zarr"))


def test_existing_output_refused_and_unfinished_output_resumed(steel_model, tmp_path):
    vol = np.random.default_rng(1).integers(0, 255, size=(2, 30, 30)).astype(np.uint8)
    zarr.save_array(str(tmp_path / "v.zarr"), vol)
    out = tmp_path / "s.zarr"
    segment(steel_model, tmp_path / "v.zarr", out, block=(1, 16, 16), workers=0, progress=False)
    ref = _probs(out)
    with pytest.raises(OutputExistsError, match="complete"):
        segment(steel_model, tmp_path / "v.zarr", out, block=(1, 16, 16), workers=0, progress=False)
    # simulate a run that stopped after 3 of 8 blocks: clear the other markers and the completion flag
    root = zarr.open_group(str(out), mode="r+")
    done = root["done"]
    done[...] = 0
    done[0, 0, 0] = done[0, 1, 1] = done[1, 0, 1] = 1
    root["0"][:, 1, 16:] = 0  # damage blocks (1, 1, *), not done: they must be recomputed
    meta = root.attrs["mpfpipe"]
    root.attrs["mpfpipe"] = {**meta, "complete": False}
    res = segment(steel_model, tmp_path / "v.zarr", out, block=(1, 16, 16), workers=0, progress=False)
    assert (res.skipped, res.done) == (3, 5)
    assert np.array_equal(_probs(out), ref) and read_done(out).all()
    # another block (e.g. a newer default): the output goes on in its own blocks, as the result does not depend
    # on them
    root.attrs["mpfpipe"] = {**meta, "complete": False}
    done[...] = 0
    done[1, 1, 0] = 1
    res = segment(steel_model, tmp_path / "v.zarr", out, block=(1, 20, 20), workers=0, progress=False)
    assert (res.blocks, res.skipped, res.done) == (8, 1, 7)
    assert zarr.open_group(str(out), mode="r")["0"].chunks[-2:] == (16, 16)
    assert np.array_equal(_probs(out), ref) and read_done(out).all()
    # different settings: refused, and --overwrite recomputes
    root.attrs["mpfpipe"] = {**meta, "complete": False}
    with pytest.raises(OutputExistsError, match=r"different settings \(quantized\)"):
        segment(steel_model, tmp_path / "v.zarr", out, block=(1, 20, 20), workers=0, progress=False, quantize=True)
    res = segment(steel_model, tmp_path / "v.zarr", out, block=(1, 20, 20), workers=0, progress=False,
                  overwrite=True, quantize=True)
    q = _probs(out)
    assert q.dtype == np.uint8 and np.abs(q / 255.0 - ref).max() <= 0.5 / 255 + 1e-6


def test_default_block_is_1024_a_side_for_a_2d_net(steel_model, tmp_path):
    """No block given: a 2D net's blocks are 1 x 1024 x 1024 (less halo computed twice than in 512 x 512 ones),
    a 3D net's stay 1 x 512 x 512 (its block reads a z halo too)."""
    from mpfpipe.segment import DEFAULT_BLOCK, default_block
    assert DEFAULT_BLOCK == default_block(2) == (1, 1024, 1024) and default_block(3) == (1, 512, 512)
    vol = np.random.default_rng(4).integers(0, 255, size=(1, 1030, 1100)).astype(np.uint8)
    zarr.save_array(str(tmp_path / "v.zarr"), vol)
    out = tmp_path / "s.zarr"
    res = segment(steel_model, tmp_path / "v.zarr", out, workers=0, progress=False, levels=1)
    root = zarr.open_group(str(out), mode="r")
    assert res.blocks == 4 and root["0"].chunks[-3:] == (1, 1024, 1024)
    assert root.attrs["mpfpipe"]["settings"]["block"] == [1, 1024, 1024]
    ref = tmp_path / "ref.zarr"
    segment(steel_model, tmp_path / "v.zarr", ref, block=(1, 512, 512), workers=0, progress=False, levels=1)
    assert np.array_equal(_probs(out), _probs(ref))


def test_foreign_output_never_overwritten_without_flag(steel_model, tmp_path):
    vol = np.zeros((1, 20, 20), np.uint8)
    zarr.save_array(str(tmp_path / "v.zarr"), vol)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("x")
    with pytest.raises(OutputExistsError, match="not an mpfpipe segmentation"):
        segment(steel_model, tmp_path / "v.zarr", tmp_path / "mine", workers=0, progress=False)
    assert (tmp_path / "mine" / "keep.txt").exists()


def test_mismatch_is_an_error_before_any_work(steel_model, tmp_path):
    zarr.save_array(str(tmp_path / "rgb.zarr"), np.zeros((2, 3, 20, 20), np.uint8))
    with pytest.raises(DataError, match="expects 1 channel"):
        segment(steel_model, tmp_path / "rgb.zarr", tmp_path / "o.zarr", workers=0, progress=False)
    assert not (tmp_path / "o.zarr").exists()
    zarr.save_array(str(tmp_path / "b.zarr"), np.zeros((2, 20, 20), bool))
    with pytest.raises(DataError, match="cannot segment"):
        segment(steel_model, tmp_path / "b.zarr", tmp_path / "o.zarr", workers=0, progress=False)
    # a model that records its training dtype refuses a volume of another dtype
    from mpfpipe.model import load_model
    m = load_model(steel_model)
    m.provenance = {"input_dtype": "uint16"}
    save_model(m, tmp_path / "m16.safetensors")
    zarr.save_array(str(tmp_path / "u8.zarr"), np.zeros((2, 20, 20), np.uint8))
    with pytest.raises(DataError, match="trained on uint16"):
        segment(tmp_path / "m16.safetensors", tmp_path / "u8.zarr", tmp_path / "o.zarr", workers=0, progress=False)
    assert not (tmp_path / "o.zarr").exists()


def test_2d_array_and_tiff_inputs(steel_model, tmp_path):
    import tifffile
    from mpfpipe.model import load_model
    m = load_model(steel_model)
    img = np.random.default_rng(3).integers(0, 255, size=(33, 27)).astype(np.uint8)
    ref = dense_forward(m.net, m.params, normalise(img[None], NORM))
    zarr.save_array(str(tmp_path / "img.zarr"), img)
    segment(steel_model, tmp_path / "img.zarr", tmp_path / "o2.zarr", block=(1, 10, 10), workers=0, progress=False)
    g = zarr.open_group(str(tmp_path / "o2.zarr"), mode="r")
    assert g["0"].shape == (2, 33, 27) and np.abs(g["0"][...] - ref).max() <= 1e-6
    assert [a["name"] for a in g.attrs["ome"]["multiscales"][0]["axes"]] == ["c", "y", "x"]
    tifffile.imwrite(tmp_path / "stack.tif", np.stack([img, img[::-1]]), compression="zlib")
    segment(steel_model, tmp_path / "stack.tif", tmp_path / "ot.zarr", block=(1, 11, 9), workers=0, progress=False)
    assert np.abs(_probs(tmp_path / "ot.zarr")[:, 0] - ref).max() <= 1e-6


def test_dataset_of_variable_size_images(steel_model, tmp_path):
    from mpfpipe.data import open_dataset, synth_defects
    from mpfpipe.model import load_model
    synth_defects(tmp_path / "ds.zarr", n_images=3, size=(48, 40), variable_size=True, seed=2)
    ds = open_dataset(tmp_path / "ds.zarr")
    m = load_model(steel_model)
    res = segment(steel_model, tmp_path / "ds.zarr", tmp_path / "o.zarr", block=(1, 19, 23), workers=0,
                  progress=False)
    assert res.voxels == sum(h * w for h, w in ds.sizes)
    probs, labels = _probs(tmp_path / "o.zarr"), _labels(tmp_path / "o.zarr")
    for i, (h, w) in enumerate(ds.sizes):
        ref = dense_forward(m.net, m.params, normalise(ds.raw_image(i), NORM))
        assert np.abs(probs[:, i, :h, :w] - ref).max() <= 1e-6
        assert (labels[i, h:] == 255).all() and (labels[i, :, w:] == 255).all()
    meta = zarr.open_group(str(tmp_path / "o.zarr"), mode="r").attrs["mpfpipe"]
    assert meta["input"]["sizes"] == [list(s) for s in ds.sizes]
    assert json.dumps(meta)  # attributes are plain JSON
