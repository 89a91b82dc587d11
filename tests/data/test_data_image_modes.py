"""One reader, every command: an image file is the same pixels in ingest, folder inference and export's --sample
(fuzz over modes P, L, LA, RGB, RGBA, I;16, an EXIF-rotated JPEG and a 16-bit TIFF), or all refuse it alike.

The picture each file shows is known by construction (a viewer's view: a palette image shows its colours, a
rotated JPEG stands the way its EXIF tag says), so the test checks the readers against it, not against each other
only. Folder inference is checked through its output: its mask of each file must equal the mask `segment` makes
of the ingested dataset, pixel for pixel (same engine, so equal masks mean equal input pixels), and both are
compared with the picture the file shows (the dataset's stored image).
"""
from __future__ import annotations

import zipfile

import numpy as np
import pytest
from PIL import Image

from mpfpipe.arch import preset
from mpfpipe.cli import main
from mpfpipe.data import open_dataset
from mpfpipe.data.imagefile import image_size, read_image_file
from mpfpipe.model import Model, save_model
from mpfpipe.params import init_params

H, W = 40, 48  # not square: a turned picture is caught by its shape
RNG = np.random.default_rng(7)
GREY = RNG.integers(0, 256, (H, W), dtype=np.uint8)
INDEX = (GREY // 4).astype(np.uint8)           # palette indices 0..63
PALETTE_GREY = (255 - 3 * INDEX).astype(np.uint8)  # what the palette image shows: never its indices
LABELS = (GREY > 127).astype(np.uint8)


def _write(kind: str, path):
    """Write the image of ``kind``; return (what it shows (H, W) array, its dtype)."""
    alpha = RNG.integers(0, 256, (H, W), dtype=np.uint8)
    if kind == "P":
        im = Image.fromarray(INDEX, mode="P")
        pal = np.repeat(255 - 3 * np.arange(256).clip(0, 85), 3).astype(np.uint8)
        im.putpalette(pal.tolist())
        im.save(path)
        return PALETTE_GREY, np.uint8
    if kind == "L":
        Image.fromarray(GREY, mode="L").save(path)
    elif kind == "LA":
        Image.fromarray(np.dstack([GREY, alpha]), mode="LA").save(path)
    elif kind == "RGB":
        Image.fromarray(np.dstack([GREY] * 3), mode="RGB").save(path)
    elif kind == "RGBA":
        Image.fromarray(np.dstack([GREY] * 3 + [alpha]), mode="RGBA").save(path)
    elif kind == "I;16":
        g16 = GREY.astype(np.uint16) * 257
        Image.fromarray(g16).save(path)  # a 16-bit grey PNG
        return g16, np.uint16
    elif kind == "TIFF16":
        import tifffile
        g16 = GREY.astype(np.uint16) * 257 + 1
        tifffile.imwrite(path, g16)
        return g16, np.uint16
    elif kind == "EXIF":
        stored = np.ascontiguousarray(np.rot90(GREY))  # (W, H) as stored; EXIF 6: shown turned 90 clockwise
        im = Image.fromarray(stored, mode="L")
        exif = Image.Exif()
        exif[0x0112] = 6
        im.save(path, quality=95, exif=exif)
        with Image.open(path) as raw:
            shown = np.rot90(np.asarray(raw), k=-1)  # orientation 6: rotate 90 clockwise to display
        return np.ascontiguousarray(shown), np.uint8
    return GREY, np.uint8


SUFFIX = {"TIFF16": ".tif", "EXIF": ".jpg"}
KINDS = ["P", "L", "LA", "RGB", "RGBA", "I;16", "EXIF", "TIFF16"]


def _model(path, dtype):
    net = preset("steel", maps=2, hidden=4)
    mean = 128.0 if dtype == np.uint8 else 30000.0
    save_model(Model(net, init_params(net, 3), normalisation={"mean": [mean], "std": [mean / 2]},
                     provenance={"input_dtype": np.dtype(dtype).name}), path)
    return path


def _cli(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return exc.value.code, err


def _segmentation_labels(path):
    import zarr
    return np.asarray(zarr.open_group(str(path), mode="r")["labels/segmentation/0"][...])


@pytest.mark.parametrize("kind", KINDS)
def test_ingest_folder_inference_and_export_agree(kind, tmp_path, capsys):
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    img_file = src / "images" / f"a{SUFFIX.get(kind, '.png')}"
    shown, dtype = _write(kind, img_file)
    # the mask is a palette PNG of class ids drawn on the picture as shown: its indices are the labels
    mask = Image.fromarray(np.ascontiguousarray((shown > shown.mean()).astype(np.uint8)), mode="P")
    mask.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    mask.save(src / "masks" / "a.png")

    assert image_size(img_file) == shown.shape
    # ingest
    code, err = _cli(capsys, "ingest", src, tmp_path / "d.zarr", "--no-progress")
    assert code == 0, err
    ds = open_dataset(tmp_path / "d.zarr")
    stored = ds.raw_image(0)
    assert stored.shape == (1, *shown.shape) and stored.dtype == dtype
    np.testing.assert_array_equal(stored[0], shown)
    np.testing.assert_array_equal(ds.raw_labels(0), (shown > shown.mean()).astype(np.uint8))

    # folder inference with a model of this pixel type == segment of the ingested dataset
    model = _model(tmp_path / "m.safetensors", dtype)
    code, err = _cli(capsys, "segment", model, src / "images", tmp_path / "fi", "--workers", "0", "--quiet")
    assert code == 0, err
    folder_mask = np.asarray(Image.open(tmp_path / "fi" / "masks" / "a.png"))
    code, err = _cli(capsys, "segment", model, tmp_path / "d.zarr", tmp_path / "s.zarr", "--workers", "0", "--quiet")
    assert code == 0, err
    np.testing.assert_array_equal(folder_mask, _segmentation_labels(tmp_path / "s.zarr")[0])

    # export's sample: the test input is the top-left crop of the same pixels
    pytest.importorskip("onnx")
    code, err = _cli(capsys, "export", model, tmp_path / "m.zip", "--sample", img_file)
    assert code == 0, err
    with zipfile.ZipFile(tmp_path / "m.zip") as zf:
        import io
        x = np.load(io.BytesIO(zf.read("test_input.npy")))
    np.testing.assert_array_equal(x[0, 0], shown[:128, :128].astype(np.float32))

    # a model of the other pixel type refuses the file alike in folder inference, export and segment (of the
    # ingested file)
    other = _model(tmp_path / "o.safetensors", np.uint16 if dtype == np.uint8 else np.uint8)
    for argv in (["segment", other, src / "images", tmp_path / "fo", "--workers", "0", "--quiet"],
                 ["export", other, tmp_path / "o.zip", "--sample", img_file],
                 ["segment", other, tmp_path / "d.zarr", tmp_path / "so.zarr", "--workers", "0", "--quiet"]):
        code, err = _cli(capsys, *argv)
        line = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert code == 1 and line and np.dtype(dtype).name in line[-1], err
        assert "pixels of type" in line[-1] or "trained on" in line[-1], err


def test_palette_is_indices_only_as_a_mask(tmp_path):
    """The one rule per role: a palette PNG read as a mask is its indices, as an image its colours."""
    p = tmp_path / "p.png"
    _write("P", p)
    np.testing.assert_array_equal(read_image_file(p, "mask"), INDEX)
    shown = read_image_file(p, "image")
    assert shown.shape == (H, W, 3)
    np.testing.assert_array_equal(shown[..., 0], PALETTE_GREY)


def test_colour_image_is_refused_by_a_grey_model_everywhere(tmp_path, capsys):
    """An RGB picture with unequal channels: folder inference and export refuse it alike for a 1-channel model."""
    src = tmp_path / "imgs"
    src.mkdir()
    rgb = np.dstack([GREY, 255 - GREY, GREY // 2])
    Image.fromarray(rgb, mode="RGB").save(src / "c.png")
    model = _model(tmp_path / "m.safetensors", np.uint8)
    errs = []
    for argv in (["segment", model, src, tmp_path / "fo", "--workers", "0", "--quiet"],
                 ["export", model, tmp_path / "o.zip", "--sample", src / "c.png"]):
        code, err = _cli(capsys, *argv)
        assert code == 1, err
        errs.append(err)
    assert all("RGB image with unequal channels" in e for e in errs)
