"""Missing and damaged chunks (mpfpipe._integrity): a dataset's chunks and a segmentation's blocks carry CRC-32s
written with them; reading a deleted, truncated or altered chunk is one error naming the array, the index and
the file; `info --verify` finds them; `segment` recomputes exactly the damaged blocks of its output."""
from __future__ import annotations

import numpy as np
import pytest
import zarr

from mpfpipe._integrity import DamagedChunkError, crc
from mpfpipe.arch import preset
from mpfpipe.cli import main
from mpfpipe.data import open_dataset, synth_em
from mpfpipe.model import Model, save_model
from mpfpipe.params import init_params
from mpfpipe.segment import SegmentError, read_done, segment


def run_cli(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return exc.value.code, out, err


@pytest.fixture
def data(tmp_path):
    return synth_em(tmp_path / "d.zarr", n_images=3, size=(48, 40), split=(2 / 3, 1 / 3))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    net = preset("steel", maps=2, hidden=4)
    path = tmp_path_factory.mktemp("m") / "m.safetensors"
    save_model(Model(net, init_params(net, 1), normalisation={"mean": [128.0], "std": [50.0]}), path)
    return path


def test_crc_is_zlib_crc32_of_the_c_order_bytes():
    import zlib
    a = np.arange(12, dtype=np.uint16).reshape(3, 4)
    assert crc(a) == zlib.crc32(a.tobytes()) and crc(a.T) == zlib.crc32(np.ascontiguousarray(a.T).tobytes())


def test_ingest_records_one_checksum_per_chunk(data):
    ds = open_dataset(data)
    sums = ds.attrs["checksums"]
    g = zarr.open_group(str(data), mode="r")
    assert sums["images"] == [crc(g["images"][i]) for i in range(3)]
    assert sums["labels"] == [crc(g["labels"][i]) for i in range(3)]


@pytest.mark.parametrize("array,damage", [("images", "delete"), ("labels", "delete"), ("images", "truncate"),
                                          ("labels", "flip")])
def test_damaged_dataset_chunk_is_named_when_read(data, capsys, array, damage):
    code, before, _ = run_cli(capsys, "info", data)
    assert code == 0 and "checksums     recorded per chunk, not read back here" in before
    f = data / array / "c" / "1" / "0" / "0" if array == "labels" else data / array / "c" / "1" / "0" / "0" / "0"
    raw = f.read_bytes()
    if damage == "delete":
        f.unlink()
    elif damage == "truncate":
        f.write_bytes(raw[: len(raw) // 2])
    else:
        b = bytearray(raw)
        b[-1] ^= 0xFF
        f.write_bytes(bytes(b))
    ds = open_dataset(data)
    ds.read(0)  # the others are fine
    with pytest.raises(DamagedChunkError) as exc:
        ds.read(1)
    msg = str(exc.value)
    assert f"{array} chunk of image 1 ({f})" in msg
    assert ("missing" if damage == "delete" else "cannot be read" if damage == "truncate" else "") in msg
    code, _, err = run_cli(capsys, "info", data, "--verify")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "1 damaged chunk(s)" in err and str(f) in err
    code, out, err = run_cli(capsys, "info", data)  # without --verify: the attributes only, no chunk is read
    assert (code, out, err) == (0, before, "")


def test_info_verify_on_an_intact_dataset(data, capsys):
    code, out, _ = run_cli(capsys, "info", data, "--verify")
    assert code == 0 and "6 chunks match their checksums" in out


def test_segment_names_a_damaged_input_chunk(data, model, tmp_path):
    (data / "images" / "c" / "2" / "0" / "0" / "0").unlink()
    with pytest.raises(SegmentError, match=r"images chunk of image 2 .* is missing"):
        segment(model, data, tmp_path / "s.ome.zarr", workers=0, progress=False)


@pytest.mark.parametrize("what", ["probs-delete", "labels-truncate"])
def test_segment_recomputes_exactly_the_damaged_blocks(data, model, tmp_path, capsys, what):
    out = tmp_path / "s.ome.zarr"
    segment(model, data, out, block=(1, 32, 32), workers=0, progress=False)
    g = zarr.open_group(str(out), mode="r")
    ref_p, ref_l = g["0"][...], g["labels/segmentation/0"][...]
    code, stdout, _ = run_cli(capsys, "info", out, "--verify")
    assert code == 0 and "12 done blocks match their checksums" in stdout
    if what == "probs-delete":
        f = out / "0" / "c" / "0" / "1" / "1" / "0"
        f.unlink()
    else:
        f = out / "labels" / "segmentation" / "0" / "c" / "2" / "0" / "1"
        f.write_bytes(f.read_bytes()[:7])
    code, _, err = run_cli(capsys, "info", out, "--verify")
    assert code == 1 and "1 damaged chunk(s)" in err and str(f) in err
    res = segment(model, data, out, block=(1, 32, 32), workers=0, progress=False)
    assert (res.blocks, res.done, res.skipped) == (12, 1, 11)
    g = zarr.open_group(str(out), mode="r")
    assert np.array_equal(g["0"][...], ref_p) and np.array_equal(g["labels/segmentation/0"][...], ref_l)
    assert read_done(out).all() and g.attrs["mpfpipe"]["complete"] is True
    from mpfpipe.errors import OutputExistsError
    with pytest.raises(OutputExistsError, match="complete segmentation"):  # intact again: nothing to redo
        segment(model, data, out, block=(1, 32, 32), workers=0, progress=False)


def test_a_damaged_pyramid_chunk_is_found_and_recomputed(data, model, tmp_path, capsys):
    out = tmp_path / "p.ome.zarr"
    segment(model, data, out, block=(1, 32, 32), workers=0, progress=False, levels=2)
    g = zarr.open_group(str(out), mode="r")
    ref = g["1"][...], g["labels/segmentation/1"][...]
    f = out / "labels" / "segmentation" / "1" / "c" / "1" / "0" / "0"
    f.write_bytes(f.read_bytes()[:5])
    code, _, err = run_cli(capsys, "info", out, "--verify")
    assert code == 1 and "1 damaged chunk(s)" in err and str(f) in err
    res = segment(model, data, out, block=(1, 32, 32), workers=0, progress=False, levels=2)
    assert (res.done, res.skipped) == (0, 12)  # level 0 intact: only the pyramid block is made again
    g = zarr.open_group(str(out), mode="r")
    assert np.array_equal(g["1"][...], ref[0]) and np.array_equal(g["labels/segmentation/1"][...], ref[1])
    assert read_done(out, 1).all() and g.attrs["mpfpipe"]["complete"] is True
