"""--config: YAML lists for options that take lists (``block: [1, 16, 16]`` as the workflows write it)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from mpfpipe.arch import preset
from mpfpipe.cli import main
from mpfpipe.model import Model, save_model
from mpfpipe.params import init_params


def _run(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_config_list_for_block_equals_the_comma_form(capsys, tmp_path):
    net = preset("steel", maps=2, hidden=3)
    save_model(Model(net, init_params(net, 1)), tmp_path / "m.safetensors")
    zarr.save_array(str(tmp_path / "v.zarr"), np.random.default_rng(0).integers(0, 255, (2, 20, 24), np.uint8))
    (tmp_path / "c.yaml").write_text("block: [1, 16, 16]\nworkers: 0\nquiet: true\n")
    code, _, err = _run(capsys, "segment", "--config", str(tmp_path / "c.yaml"), str(tmp_path / "m.safetensors"),
                        str(tmp_path / "v.zarr"), str(tmp_path / "s.zarr"))
    assert code == 0, err
    assert zarr.open_array(str(tmp_path / "s.zarr"), path="0").chunks == (2, 1, 16, 16)


def test_config_list_of_wrong_length_is_a_usage_error(capsys, tmp_path):
    net = preset("steel", maps=2, hidden=3)
    save_model(Model(net, init_params(net, 1)), tmp_path / "m.safetensors")
    (tmp_path / "c.yaml").write_text("block: [1, 2, 3, 4]\n")
    code, _, err = _run(capsys, "segment", "--config", str(tmp_path / "c.yaml"), str(tmp_path / "m.safetensors"),
                        "in.zarr", "out.zarr")
    assert code == 2 and "--block" in err and "1,2,3,4" in err


def test_config_list_for_a_repeatable_option_and_a_scalar_for_one(capsys, tmp_path):
    (tmp_path / "c.yaml").write_text("size: 8x8\nnet: [steel]\nmode: mpf\nphase: [infer]\nrepeat: 1\n"
                                     "peak: false\n")
    code, out, err = _run(capsys, "bench", "--config", str(tmp_path / "c.yaml"))
    assert code == 0, err
    records = [json.loads(ln) for ln in out.splitlines()]
    # exactly one case: had the YAML's size, mode, phase, repeat or peak been ignored, the defaults (512x512, both
    # modes, both phases, 5 runs, the matmul peak first) would show here
    assert [(r["net"], r["size"], r["mode"], r["phase"], r["repeat"]) for r in records] == [
        ("steel", "8x8", "mpf", "infer", 1)]
