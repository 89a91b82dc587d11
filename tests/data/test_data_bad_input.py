"""Inputs that used to give a wrong dataset with exit 0: TIFF stacks written page by page, truncated TIFFs,
duplicate class names, a positive value no label has, a label map that leaves no labelled pixel."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile

from mpfpipe.data import ingest, open_dataset
from mpfpipe.errors import DataError

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 255, (3, 32, 40), dtype=np.uint8)
LABELS = (RNG.integers(0, 2, (3, 32, 40)) * 255).astype(np.uint8)


def _paged(path, stack):
    for page in stack:
        tifffile.imwrite(path, page, append=True)  # one series per page, as many tools write stacks
    return path


def test_a_stack_written_page_by_page_keeps_every_page(tmp_path):
    img, lab = _paged(tmp_path / "img.tif", IMAGES), _paged(tmp_path / "lab.tif", LABELS)
    with tifffile.TiffFile(img) as tif:
        assert len(tif.series) == 3  # what imread alone would cut to one page
    ds = open_dataset(ingest([img, lab], tmp_path / "d.zarr", positive=255))
    assert ds.n_images == 3
    for i in range(3):
        assert np.array_equal(ds.raw_image(i)[0], IMAGES[i])
        assert np.array_equal(ds.raw_labels(i), (LABELS[i] == 255).astype(np.uint8))


@pytest.mark.parametrize("cut", ["ifd", "data"])
def test_a_truncated_stack_is_an_error_naming_it(tmp_path, cut):
    img, lab = _paged(tmp_path / "img.tif", IMAGES), _paged(tmp_path / "lab.tif", LABELS)
    raw = img.read_bytes()
    with tifffile.TiffFile(img) as tif:
        last = tif.pages[2].offset  # the third page's IFD
    img.write_bytes(raw[:last] if cut == "ifd" else raw[:len(raw) - 200])
    with pytest.raises(DataError, match=f"{img}: (damaged TIFF|cannot read TIFF)"):
        ingest([img, lab], tmp_path / "d.zarr", positive=255)
    assert not (tmp_path / "d.zarr").exists()
    if cut == "ifd":  # segment must not read on with the two pages left
        from mpfpipe.segment import open_volume
        with pytest.raises(DataError, match=f"{img}: damaged TIFF"):
            open_volume(img)


def test_a_text_file_named_tif_is_named(tmp_path):
    fake = tmp_path / "fake.tif"
    fake.write_text("hello")
    (tmp_path / "labels.tif").write_text("hello")
    with pytest.raises(DataError, match=f"{fake}: cannot read TIFF .*not a TIFF file"):
        ingest([fake, tmp_path / "labels.tif"], tmp_path / "d.zarr")
    with pytest.raises(DataError, match=f"{fake} is given twice among the sources"):
        ingest([fake, fake], tmp_path / "d.zarr")  # the images as their own labels


def test_labels_with_nothing_to_learn_are_refused(tmp_path):
    img, lab = tmp_path / "i.npy", tmp_path / "l.npy"
    np.save(img, IMAGES)
    np.save(lab, LABELS)
    with pytest.raises(DataError, match=r"positive value 7: no label pixel has that value \(label values: 0, 255\)"):
        ingest([img, lab], tmp_path / "d.zarr", positive=7)
    with pytest.raises(DataError, match="no labelled pixel in any of the 3 images"):
        ingest([img, lab], tmp_path / "d.zarr", label_map="0:ignore,255:ignore")
    with pytest.raises(DataError, match=r"class names \['a', 'a'\] are not distinct"):
        ingest([img, lab], tmp_path / "d.zarr", class_names="a,a")
    assert not (tmp_path / "d.zarr").exists()
