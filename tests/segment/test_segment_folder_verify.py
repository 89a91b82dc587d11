"""Done means verified (folder inference): a done marker carries the CRC-32 of the mask it vouches for, so a mask
truncated or edited after the run is redone by a rerun and reported by ``info --verify``, not skipped and not
called complete."""
import json

import numpy as np
import pytest
from PIL import Image

from mpfpipe.arch import preset
from mpfpipe.cli import main
from mpfpipe.model import Model, save_model
from mpfpipe.params import init_params
from mpfpipe.segment import segment_folder


@pytest.fixture
def setup(tmp_path):
    net = preset("steel", maps=2, hidden=4)
    model = tmp_path / "m.safetensors"
    save_model(Model(net, init_params(net, 1), normalisation={"mean": [120.0], "std": [40.0]},
                     provenance={"input_dtype": "uint8"}), model)
    src = tmp_path / "imgs"
    src.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 255, (37, 45), dtype=np.uint8)).save(src / f"{name}.png")
    return model, src, tmp_path / "out"


def _cli(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_truncated_mask_is_redone_and_reported(setup, capsys):
    model, src, out = setup
    first = segment_folder(model, src, out, workers=0, progress=False)
    assert first.done == 2
    good = (out / "masks" / "a.png").read_bytes()
    marker = json.loads((out / ".done" / "a.png.json").read_text())
    import zlib
    assert marker["mask_crc32"] == zlib.crc32(good) and marker["mask_bytes"] == len(good)

    code, text, err = _cli(capsys, "info", out, "--verify")
    assert code == 0 and "2 done masks match their checksums" in text, err

    (out / "masks" / "a.png").write_bytes(good[: len(good) // 2])  # truncated after the run
    code, _, err = _cli(capsys, "info", out, "--verify")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: 1 damaged mask(s)"), err
    assert "a.png" in lines[0] and "checksum" in lines[0]

    again = segment_folder(model, src, out, workers=0, progress=False)
    assert (again.done, again.skipped) == (1, 1)  # the damaged one redone, the intact one kept
    assert (out / "masks" / "a.png").read_bytes() == good
    code, text, _ = _cli(capsys, "info", out, "--verify")
    assert code == 0 and "2 done masks" in text


def test_edited_mask_of_the_same_size_is_redone(setup):
    model, src, out = setup
    segment_folder(model, src, out, workers=0, progress=False)
    mask = out / "masks" / "b.png"
    good = mask.read_bytes()
    arr = np.asarray(Image.open(mask)).copy()
    arr[0, 0] ^= 1
    Image.fromarray(arr).save(mask)
    again = segment_folder(model, src, out, workers=0, progress=False)
    assert again.done == 1 and mask.read_bytes() == good
