"""``mpfpipe ingest``: exit codes 0 (ok), 1 (runtime error with its message), 2 (usage)."""
import numpy as np
from click.testing import CliRunner

from mpfpipe.cli import cli
from mpfpipe.data import open_dataset


def run(*args):
    result = CliRunner().invoke(cli, ["ingest", *map(str, args)])
    text = result.output + (str(result.exception) if result.exception else "")
    return result.exit_code, text


def test_synthetic_em_and_defects(tmp_path):
    code, text = run("synthetic:em", tmp_path / "em.zarr", "--n-images", 3, "--size", "48x40", "--seed", 2,
                     "--no-progress")
    assert code == 0, text
    assert "3 images" in text
    ds = open_dataset(tmp_path / "em.zarr")
    assert ds.sizes == [(48, 40)] * 3 and ds.class_names == ["cell", "membrane"]
    code, text = run("synthetic:defects", tmp_path / "d.zarr", "--n-images", 8, "--size", 32,
                     "--defect-fraction", 0.25, "--split", "0.5,0.25,0.25", "--no-progress")
    assert code == 0, text
    assert sum(open_dataset(tmp_path / "d.zarr").positive) == 2


def test_real_style_options_and_config(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "i.npy", rng.integers(0, 255, (4, 12, 12)).astype(np.uint8))
    np.save(tmp_path / "l.npy", np.where(rng.random((4, 12, 12)) < 0.5, 0, 255).astype(np.uint8))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("label-map: {0: 1, 255: 0}\nclass_names: [cell, membrane]\nsplit: [0.5, 0.5]\n"
                   "downsample: 2\n")
    code, text = run(tmp_path / "i.npy", tmp_path / "l.npy", tmp_path / "o.zarr", "--config", cfg)
    assert code == 0, text
    ds = open_dataset(tmp_path / "o.zarr")
    assert ds.class_names == ["cell", "membrane"] and ds.sizes == [(6, 6)] * 4
    assert ds.attrs["label_mapping"] == {"mode": "map", "map": {"0": 1, "255": 0}}
    assert ds.split_sizes() == {"train": 2, "val": 2, "test": 0}
    code, text = run(tmp_path / "i.npy", tmp_path / "l.npy", tmp_path / "o.zarr")
    assert code == 1 and "exists" in text and "--overwrite" in text
    code, text = run(tmp_path / "i.npy", tmp_path / "l.npy", tmp_path / "o.zarr", "--overwrite", "--positive", 0)
    assert code == 0, text


def test_runtime_errors_exit_1(tmp_path):
    np.save(tmp_path / "i.npy", np.zeros((3, 8, 8), np.uint8))
    np.save(tmp_path / "l.npy", np.zeros((2, 8, 8), np.uint8))
    code, text = run(tmp_path / "i.npy", tmp_path / "l.npy", tmp_path / "o.zarr")
    assert code == 1 and "has 3 images but l.npy has 2" in text
    assert not (tmp_path / "o.zarr").exists()
    code, text = run(tmp_path / "nothing", tmp_path / "o.zarr")
    assert code == 1 and "no such file" in text


def test_usage_errors_exit_2(tmp_path):
    assert run()[0] == 2
    assert run(tmp_path / "only.zarr")[0] == 2
    code, text = run("synthetic:em", tmp_path / "x.zarr", "--positive", 0)
    assert code == 2 and "does not apply" in text
    code, text = run("synthetic:nope", tmp_path / "x.zarr")
    assert code == 2
    code, text = run(tmp_path, tmp_path / "x.zarr", "--n-images", 3)
    assert code == 2 and "synthetic" in text
    assert run(tmp_path, tmp_path / "x.zarr", "--downsample", 0)[0] == 2
    assert not (tmp_path / "x.zarr").exists()
