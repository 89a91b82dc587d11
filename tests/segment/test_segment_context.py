"""segment() with a section-context (2.5-D) model: a plain ISBI stack is read with each section's neighbours as its
extra input maps, exactly as the dense pass on the hand-stacked sections, at any z block, the same as the dataset
ingested with that context; and the inputs that do not fit are refused in one line."""
import numpy as np
import pytest
import tifffile
import zarr

from mpfpipe.arch import preset
from mpfpipe.data import ingest
from mpfpipe.errors import DataError
from mpfpipe.fragment import dense_forward
from mpfpipe.model import Model, load_model, save_model
from mpfpipe.params import init_params
from mpfpipe.segment import segment
from mpfpipe.segment.blocks import normalise

NORM3 = {"mean": [121.0, 120.0, 122.0], "std": [41.0, 40.0, 42.0]}


@pytest.fixture(scope="module")
def crop(shared_data, tmp_path_factory):
    """Sections 3-5 of the ISBI training stack, a 40 x 52 crop, as a TIFF stack with its labels."""
    src = shared_data / "isbi2012"
    vol = np.ascontiguousarray(tifffile.imread(src / "train-volume.tif", key=[3, 4, 5])[:, 200:240, 150:202])
    lab = np.ascontiguousarray(tifffile.imread(src / "train-labels.tif", key=[3, 4, 5])[:, 200:240, 150:202])
    d = tmp_path_factory.mktemp("crop")
    tifffile.imwrite(d / "im.tif", vol, photometric="minisblack")
    tifffile.imwrite(d / "lab.tif", lab, photometric="minisblack")
    return d, vol


@pytest.fixture(scope="module")
def n4_context(tmp_path_factory):
    """The full-size n4 preset (its fast paths) reading 3 maps: a section and the ones above and below."""
    net = preset("n4", in_channels=3)
    path = tmp_path_factory.mktemp("model") / "n4ctx.safetensors"
    save_model(Model(net, init_params(net, 5), class_names=["cell", "membrane"], normalisation=NORM3,
                     section_context=1), path)
    return path


def _probs(path):
    return zarr.open_group(str(path), mode="r")["0"][...]


def test_plain_stack_reads_its_neighbours_exactly(crop, n4_context, tmp_path):
    d, vol = crop
    model = load_model(n4_context)
    assert model.section_context == 1
    stacked = np.pad(vol, ((1, 1), (0, 0), (0, 0)), mode="symmetric")  # by hand: sections z-1, z, z+1
    ref = np.stack([dense_forward(model.net, model.params, normalise(stacked[z:z + 3], NORM3)) for z in range(3)],
                   axis=1)
    outs = []
    for block in [(1, 40, 52), (2, 23, 29), (3, 40, 52)]:  # z blocks that start and end inside the stack
        out = tmp_path / f"seg{block[0]}.ome.zarr"
        res = segment(n4_context, d / "im.tif", out, block=block, workers=0, progress=False)
        assert res.failed == 0 and res.done == res.blocks
        assert np.abs(_probs(out) - ref).max() <= 1e-6
        outs.append(_probs(out))
    assert np.array_equal(outs[2], outs[0])  # the same y, x tiling: z blocks of 1 or 3 sections, bit for bit
    meta = zarr.open_group(str(tmp_path / "seg1.ome.zarr"), mode="r").attrs["mpfpipe"]
    assert meta["input"]["section_context"] == 1 and meta["input"]["channels"] == 3

    # the dataset ingested with the same context holds the stacked maps: the same output, bit for bit
    ds = ingest([d / "im.tif", d / "lab.tif"], tmp_path / "ctx.zarr", positive=0, section_context=1)
    segment(n4_context, ds, tmp_path / "ds.ome.zarr", block=(1, 40, 52), workers=0, progress=False)
    assert np.array_equal(_probs(tmp_path / "ds.ome.zarr"), outs[0])
    # and so does the plain dataset of the stack
    plain = ingest([d / "im.tif", d / "lab.tif"], tmp_path / "plain.zarr", positive=0)
    segment(n4_context, plain, tmp_path / "plain.ome.zarr", block=(1, 40, 52), workers=0, progress=False)
    assert np.array_equal(_probs(tmp_path / "plain.ome.zarr"), outs[0])


def test_inputs_that_do_not_fit_a_context_model(crop, n4_context, tmp_path):
    d, vol = crop
    three = tmp_path / "three.zarr"
    zarr.save_array(str(three), np.stack([vol] * 3, axis=1))  # (z, c = 3, y, x)
    with pytest.raises(DataError, match=r"reads 1 section\(s\) above and below .* has 3 channel\(s\)"):
        segment(n4_context, three, tmp_path / "o1.ome.zarr", workers=0, progress=False)
    ds2 = ingest([d / "im.tif", d / "lab.tif"], tmp_path / "ctx2.zarr", positive=0, section_context=2)
    with pytest.raises(DataError, match="ingested with section context 2, but the model reads 1"):
        segment(n4_context, ds2, tmp_path / "o2.ome.zarr", workers=0, progress=False)
    folder = tmp_path / "pngs"
    folder.mkdir()
    from PIL import Image
    Image.fromarray(vol[0]).save(folder / "a.png")
    with pytest.raises(DataError, match="folder of separate images: give it a stack"):
        segment(n4_context, folder, tmp_path / "o3", workers=0, progress=False)
    # a model without context does not read a context dataset's stacked maps as channels of its own
    net = preset("n4", maps=3, hidden=4)
    flat = save_model(Model(net, init_params(net, 1), normalisation={"mean": [120.0], "std": [40.0]}),
                      tmp_path / "flat.safetensors")
    ds1 = ingest([d / "im.tif", d / "lab.tif"], tmp_path / "ctx1.zarr", positive=0, section_context=1)
    with pytest.raises(DataError, match=r"ingested with section context 1, but the model reads 0"):
        segment(flat, ds1, tmp_path / "o4.ome.zarr", workers=0, progress=False)
    assert not any((tmp_path / n).exists() for n in ("o1.ome.zarr", "o2.ome.zarr", "o3", "o4.ome.zarr"))


def test_cli_names_the_mismatch_in_one_line(crop, n4_context, tmp_path, capsys):
    from mpfpipe.cli import main
    d, vol = crop
    zarr.save_array(str(tmp_path / "two.zarr"), np.stack([vol] * 2, axis=1))
    with pytest.raises(SystemExit) as exc:
        main(["segment", str(n4_context), str(tmp_path / "two.zarr"), str(tmp_path / "o.ome.zarr"), "--workers", "1"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code != 0 and len(err.splitlines()) == 1 and "has 2 channel(s)" in err

