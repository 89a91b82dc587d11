"""Test-time augmentation: the mean over the 8 flips and 90-degree turns equals the explicit average of the
existing dense pass on the 8 transformed images, block by block (any block size, uneven halos), for volumes
(Zarr, TIFF, HDF5, on a LocalCluster too) and folders of images."""
import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image

from mpfpipe.arch import preset
from mpfpipe.errors import OutputExistsError
from mpfpipe.fragment import dense_forward
from mpfpipe.model import Model, save_model
from mpfpipe.params import init_params
from mpfpipe.segment import segment
from mpfpipe.segment.blocks import Engine, block_grid, compute_block, normalise

NORM = {"mean": [120.0], "std": [40.0]}
# the 8 transforms of the square's symmetry group, written out with numpy, each with its inverse
TRANSFORMS = [
    (lambda a: a, lambda a: a),
    (lambda a: np.flip(a, -1), lambda a: np.flip(a, -1)),
    (lambda a: np.flip(a, -2), lambda a: np.flip(a, -2)),
    (lambda a: np.rot90(a, 1, (-2, -1)), lambda a: np.rot90(a, -1, (-2, -1))),
    (lambda a: np.rot90(a, 2, (-2, -1)), lambda a: np.rot90(a, -2, (-2, -1))),
    (lambda a: np.rot90(a, 3, (-2, -1)), lambda a: np.rot90(a, -3, (-2, -1))),
    (lambda a: np.swapaxes(a, -1, -2), lambda a: np.swapaxes(a, -1, -2)),
    (lambda a: np.rot90(np.swapaxes(a, -1, -2), 2, (-2, -1)), lambda a: np.swapaxes(np.rot90(a, -2, (-2, -1)), -1, -2)),
]


def explicit_tta(net, params, x):
    """mean_T T^-1(dense_forward(T(x))) with the existing engine, x (C, H, W) normalised."""
    outs = [inv(dense_forward(net, params, np.ascontiguousarray(fwd(x)))) for fwd, inv in TRANSFORMS]
    return np.mean(np.stack(outs).astype(np.float64), axis=0)


def test_the_eight_transforms_are_distinct():
    a = np.arange(12.0).reshape(3, 4)
    seen = {fwd(a).tobytes() + bytes(fwd(a).shape) for fwd, _ in TRANSFORMS}
    assert len(seen) == 8
    assert all(np.array_equal(inv(fwd(a)), a) for fwd, inv in TRANSFORMS)


@pytest.mark.parametrize("name", ["steel", "n3"])  # steel: window 34, uneven halo (16, 17); n3: odd window
def test_tta_block_equals_explicit_average_for_any_block(name):
    net = preset(name, maps=2, hidden=4)
    params = init_params(net, 11)
    vol = np.random.default_rng(3).integers(0, 255, size=(1, 1, 45, 38)).astype(np.uint8)
    ref = explicit_tta(net, params, normalise(vol[0], NORM))
    plain = dense_forward(net, params, normalise(vol[0], NORM))
    assert np.abs(ref - plain).max() > 1e-3  # the transforms do change the output: the test can fail
    engine = Engine(net, params, NORM, tta=True)
    read = lambda z0, z1, yr, xr: vol[z0:z1, :, yr[0]:yr[1], xr[0]:xr[1]]  # noqa: E731
    blocks = [(1, 45, 38), (1, 7, 13), (1, 17, 5), (1, 1, 38)] if name == "steel" else [(1, 45, 38), (1, 23, 19)]
    for block in blocks:  # n3's 65x65 window makes small blocks costly: two sizes suffice for its odd halo
        out = np.zeros_like(ref)
        for b in block_grid((1, 45, 38), block):
            probs, labels = compute_block(engine, read, b, lambda z: (45, 38))
            out[:, slice(*b.y), slice(*b.x)] = probs[:, 0]
            assert np.array_equal(labels[0], probs[:, 0].argmax(0))
        assert np.abs(out - ref).max() <= 1e-6


@pytest.fixture(scope="module")
def steel_model(tmp_path_factory):
    net = preset("steel", maps=2, hidden=4)
    path = tmp_path_factory.mktemp("model") / "steel.safetensors"
    save_model(Model(net, init_params(net, 5), normalisation=NORM), path)
    return path, net


def _probs(path):
    return zarr.open_group(str(path), mode="r")["0"][...]


def test_tta_volume_identical_for_any_block_size_input_kind_and_cluster(steel_model, tmp_path):
    import h5py
    path, net = steel_model
    from mpfpipe.model import load_model
    params = load_model(path).params
    vol = np.random.default_rng(4).integers(0, 255, size=(2, 37, 50)).astype(np.uint8)
    zarr.save_array(str(tmp_path / "v.zarr"), vol)
    tifffile.imwrite(tmp_path / "v.tif", vol)
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f["raw"] = vol
    ref = np.stack([explicit_tta(net, params, normalise(s[None], NORM)) for s in vol], axis=1)
    runs = [("v.zarr", (1, 37, 50), 0), ("v.zarr", (2, 11, 19), 0), ("v.tif", (1, 16, 16), 0),
            ("v.h5:raw", (1, 20, 13), 0), ("v.zarr", (1, 13, 23), 2)]
    outs = []
    for i, (src, block, workers) in enumerate(runs):
        out = tmp_path / f"s{i}.zarr"
        res = segment(path, str(tmp_path / src), out, block=block, workers=workers, threads=1, tta=True,
                      progress=False)
        assert res.failed == 0
        outs.append(_probs(out))
        assert np.abs(outs[-1] - ref).max() <= 1e-6
    # other blocks, other input kinds (the same pixels) and the 2-worker cluster: bit-identical
    assert [i for i, o in enumerate(outs) if not np.array_equal(o, outs[0])] == []
    # an unfinished output made without TTA is not continued with it
    attrs_out = tmp_path / "plain.zarr"
    segment(path, tmp_path / "v.zarr", attrs_out, block=(1, 37, 50), workers=0, progress=False)
    with pytest.raises(OutputExistsError):
        segment(path, tmp_path / "v.zarr", attrs_out, block=(1, 37, 50), workers=0, progress=False, tta=True)


def test_tta_folder_equals_explicit_average(steel_model, tmp_path):
    path, net = steel_model
    from mpfpipe.model import load_model
    params = load_model(path).params
    img = np.random.default_rng(6).integers(0, 255, size=(33, 58)).astype(np.uint8)
    (tmp_path / "in").mkdir()
    Image.fromarray(img).save(tmp_path / "in" / "a.png")
    ref = explicit_tta(net, params, normalise(img[None], NORM))
    res = segment(path, tmp_path / "in", tmp_path / "out", block=(1, 16, 20), workers=0, tta=True, progress=False)
    assert res.done == 1 and res.tta
    mask = np.asarray(Image.open(tmp_path / "out" / "masks" / "a.png"))
    sure = np.abs(ref[1] - ref[0]) > 1e-5  # away from ties, the arg-max is determined
    assert sure.mean() > 0.99 and np.array_equal(mask[sure], ref.argmax(0)[sure])
