"""ingest() on small generated files: every layout, label mappings, down-sampling, variable sizes, and every bad
input giving its message while leaving nothing at the output."""
import numpy as np
import pytest
import tifffile
from PIL import Image

from mpfpipe.data import IGNORE_INDEX, ingest, open_dataset
from mpfpipe.errors import DataError, OutputExistsError


def leftovers(out):
    """Anything at OUTPUT or a temp dir of it beside it."""
    return [p.name for p in out.parent.iterdir() if p.name == out.name or p.name.startswith(f".{out.name}.")]


def make_folder(root, sizes, *, layout="pairs", rgb=False, seed=0):
    """Images with anti-aliased-like masks: 'pairs' = <stem>.jpg+<stem>.png in one folder (magnetic tile),
    'dirs' = images/ + masks/ (NEU-Seg)."""
    rng = np.random.default_rng(seed)
    out = {}
    img_dir = root / ("Imgs" if layout == "pairs" else "images")
    mask_dir = img_dir if layout == "pairs" else root / "masks"
    img_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    for j, (h, w) in enumerate(sizes):
        img = rng.integers(0, 256, (h, w)).astype(np.uint8)
        mask = np.zeros((h, w), np.uint8)
        if j % 2 == 0:
            mask[h // 4: h // 2, w // 4: w // 2] = 255
            mask[h // 2, w // 4: w // 2] = 100  # anti-aliased edge, below the threshold
        stem = f"im{j:02d}"
        data = np.repeat(img[..., None], 3, axis=2) if rgb else img
        Image.fromarray(data).save(img_dir / f"{stem}.png" if layout == "dirs" else img_dir / f"{stem}.tif")
        Image.fromarray(mask).save(mask_dir / f"{stem}.png")
        out[stem] = (img, mask)
    return out


def test_folder_pairs_variable_sizes_pixel_exact(tmp_path):
    sizes = [(20, 30), (45, 17), (33, 33), (12, 50)]
    src = make_folder(tmp_path / "MT_Demo", sizes, layout="pairs")
    out = ingest([tmp_path / "MT_Demo"], tmp_path / "d.zarr")
    ds = open_dataset(out)
    assert ds.n_images == 4 and ds.channels == 1 and ds.sizes == sizes
    assert ds.group["images"].shape == (4, 1, 45, 50) and ds.group["images"].chunks == (1, 1, 45, 50)
    assert ds.attrs["label_mapping"] == {"mode": "threshold", "threshold": 127}
    for i, name in enumerate(ds.names):
        img, mask = src[name.split("/")[-1].split(".")[0]]
        assert np.array_equal(ds.raw_image(i)[0], img)
        assert np.array_equal(ds.raw_labels(i), (mask > 127).astype(np.uint8))
        h, w = sizes[i]
        full = ds.group["labels"][i]
        assert (full[h:] == IGNORE_INDEX).all() and (full[:, w:] == IGNORE_INDEX).all()
    assert ds.attrs["positive"] == [True, False, True, False]
    ones = sum(int((src[n.split("/")[-1].split(".")[0]][1] > 127).sum()) for n in ds.names)
    assert ones > 0 and ds.class_counts().tolist() == [sum(h * w for h, w in sizes) - ones, ones]


def test_dirs_layout_rgb_reduced_and_normalisation(tmp_path):
    sizes = [(16, 16)] * 6
    src = make_folder(tmp_path / "neu" / "train", sizes, layout="dirs", rgb=True)
    out = ingest([tmp_path / "neu"], tmp_path / "d.zarr", positive=255, split=(0.5, 0.5))
    ds = open_dataset(out)
    assert ds.channels == 1 and ds.attrs["groups"] == ["train"] * 6
    train = ds.split("train")
    pix = np.concatenate([src[ds.names[i].split("/")[-1][:4]][0].ravel() for i in train]).astype(float)
    assert np.isclose(ds.normalisation["mean"][0], pix.mean()) and np.isclose(ds.normalisation["std"][0], pix.std())
    s = ds.read(train[0])
    assert s.image.dtype == np.float32 and abs(s.image.mean()) < 2


def test_two_folders_matched_by_stem_and_mask_suffix(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for j in range(3):
        Image.fromarray(np.full((8, 9), j * 10, np.uint8)).save(tmp_path / "a" / f"x{j}.png")
        Image.fromarray(np.eye(8, 9, dtype=np.uint8) * (j % 3)).save(tmp_path / "b" / f"x{j}_mask.png")
    ds = open_dataset(ingest([tmp_path / "a", tmp_path / "b"], tmp_path / "d.zarr",
                             class_names="bg,one,two"))
    assert ds.attrs["label_mapping"] == {"mode": "identity"} and ds.class_names == ["bg", "one", "two"]
    assert ds.raw_labels(2).max() == 2 and ds.raw_image(1)[0, 0, 0] == 10


def test_tiff_stacks_with_masks_label_map_and_downsample(tmp_path):
    rng = np.random.default_rng(1)
    vol = rng.integers(0, 65535, (3, 16, 12)).astype(np.uint16)
    lab = np.where(rng.random((3, 16, 12)) < 0.3, 0, 255).astype(np.uint8)
    mask = np.ones((3, 16, 12), np.uint8)
    mask[:, :4] = 0
    for name, arr in (("v.tif", vol), ("l.tif", lab), ("m.tif", mask)):
        tifffile.imwrite(tmp_path / name, arr, photometric="minisblack")
    out = ingest([tmp_path / "v.tif", tmp_path / "l.tif", tmp_path / "m.tif"], tmp_path / "d.zarr",
                 label_map={0: 1, 255: 0}, class_names=["cell", "membrane"])
    ds = open_dataset(out)
    assert ds.dtype == np.uint16 and ds.has_masks
    assert np.array_equal(ds.raw_image(1)[0], vol[1])
    expect = np.where(lab[2] == 0, 1, 0)
    expect[:4] = IGNORE_INDEX
    assert np.array_equal(ds.read(2).labels, expect)
    assert ds.class_counts().sum() == 3 * 12 * 12
    # down-sampling by 4: block mean of images, block majority of labels (ties to the higher class)
    ds4 = open_dataset(ingest([tmp_path / "v.tif", tmp_path / "l.tif"], tmp_path / "d4.zarr", positive=0,
                              downsample=4))
    assert ds4.sizes == [(4, 3)] * 3 and ds4.attrs["original_sizes"] == [[16, 12]] * 3
    blk = vol[0, 4:8, 8:12].astype(float).mean()
    assert ds4.raw_image(0)[0, 1, 2] == np.rint(blk)
    votes = (lab[0, 4:8, 8:12] == 0).sum()
    assert ds4.raw_labels(0)[1, 2] == (1 if votes >= 8 else 0)


def test_npy_float_images_and_overwrite(tmp_path):
    imgs = np.random.default_rng(2).random((4, 2, 10, 10))  # float64 -> stored float32, 2 channels
    labs = np.zeros((4, 10, 10), np.uint8)
    labs[1, 3:5, 3:5] = 1
    np.save(tmp_path / "i.npy", imgs)
    np.save(tmp_path / "l.npy", labs)
    out = tmp_path / "d.zarr"
    ingest([tmp_path / "i.npy", tmp_path / "l.npy"], out)
    ds = open_dataset(out)
    assert ds.dtype == np.float32 and ds.channels == 2 and len(ds.normalisation["mean"]) == 2
    assert np.array_equal(ds.raw_image(3), imgs[3].astype(np.float32))
    with pytest.raises(OutputExistsError, match="exists"):
        ingest([tmp_path / "i.npy", tmp_path / "l.npy"], out)
    ingest([tmp_path / "i.npy", tmp_path / "l.npy"], out, overwrite=True, split=(0.5, 0.25, 0.25), seed=4)
    assert open_dataset(out).split_sizes() == {"train": 2, "val": 1, "test": 1}
    assert leftovers(out) == ["d.zarr"]


def _npy(tmp_path, images, labels):
    np.save(tmp_path / "i.npy", images)
    np.save(tmp_path / "l.npy", labels)
    return [tmp_path / "i.npy", tmp_path / "l.npy"]


U8 = np.zeros((3, 8, 8), np.uint8)


@pytest.mark.parametrize("images, labels, kw, message", [
    (U8, U8[:2], {}, "has 3 images but l.npy has 2"),
    (U8, U8[:, :, :7], {}, r"shape \(8, 7\) per slice"),
    (U8, U8 + 7, {"label_map": "0:0,255:1"}, r"label values \[7\] are outside the label mapping"),
    (U8, U8 + 3, {"class_names": "a,b"}, r"outside the mapping"),
    (np.full((3, 8, 8), np.nan, np.float32), U8, {}, "NaN or infinite"),
    (np.zeros((3, 8, 8), np.int32), U8, {}, "unsupported image dtype int32"),
    (U8, U8.astype(np.float32), {}, "unsupported label dtype float32"),
    (U8, U8, {"downsample": 16}, "smaller than the downsample factor"),
    (U8, U8, {"split": (0.2, 0.9)}, "sum to 1"),
    (U8, U8, {"positive": 1, "label_map": "0:0"}, "not both"),
])
def test_bad_arrays_fail_cleanly(tmp_path, images, labels, kw, message):
    out = tmp_path / "out.zarr"
    with pytest.raises(DataError, match=message):
        ingest(_npy(tmp_path, images, labels), out, **kw)
    assert leftovers(out) == []


def test_bad_folders_fail_cleanly(tmp_path):
    out = tmp_path / "out.zarr"
    src = tmp_path / "src"
    make_folder(src, [(10, 10), (12, 12)], layout="dirs")
    (src / "masks" / "im01.png").unlink()
    with pytest.raises(DataError, match="1 image.s. without a mask .* im01"):
        ingest([src], out)
    Image.fromarray(np.zeros((11, 12), np.uint8)).save(src / "masks" / "im01.png")
    with pytest.raises(DataError, match=r"im01.png: labels are 11x12 but the image .*im01.png is 12x12"):
        ingest([src], out)
    Image.fromarray(np.zeros((12, 12), np.uint8)).save(src / "masks" / "im01.png")
    (src / "images" / "im01.png").write_bytes(b"not an image at all")
    with pytest.raises(DataError, match=r"images/im01.png: cannot read image file"):
        ingest([src], out)
    # a truncated file whose header is fine fails in the second pass, after writing started
    good = tmp_path / "g.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (12, 12)).astype(np.uint8)).save(good)
    (src / "images" / "im01.png").write_bytes(good.read_bytes()[:-40])
    with pytest.raises(DataError, match=r"im01.png: cannot read image file"):
        ingest([src], out)
    assert leftovers(out) == []
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image/mask pairs found"):
        ingest([tmp_path / "empty"], out)
    with pytest.raises(DataError, match="no input"):
        ingest([], out)
    with pytest.raises(DataError, match="no such file"):
        ingest([tmp_path / "missing.tif", tmp_path / "l.tif"], out)
    assert leftovers(out) == []


def test_existing_output_not_a_store_is_not_overwritten(tmp_path):
    paths = _npy(tmp_path, U8, U8)
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.txt").write_text("x")
    with pytest.raises(OutputExistsError):
        ingest(paths, out)
    with pytest.raises(OutputExistsError, match="mpfpipe did not write"):
        ingest(paths, out, overwrite=True)
    assert (out / "thesis.txt").exists()


def test_incomplete_dataset_does_not_open(tmp_path):
    import zarr
    out = ingest(_npy(tmp_path, U8, U8), tmp_path / "d.zarr")
    g = zarr.open_group(str(out), mode="r+")
    g.attrs["mpfpipe_dataset"] = {"version": 1, "complete": False}
    with pytest.raises(DataError, match="incomplete dataset"):
        open_dataset(out)
    with pytest.raises(DataError, match="no such dataset"):
        open_dataset(tmp_path / "nope.zarr")
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    with pytest.raises(DataError, match="not an mpfpipe dataset"):
        open_dataset(tmp_path / "plain.zarr")
