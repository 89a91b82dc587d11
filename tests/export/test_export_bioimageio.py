"""bioimage.io model packages: valid for bioimageio.spec (format 0.5), and their ONNX weights reproduce the test
output, which is mpfpipe's own dense pass, to 1e-4 in onnxruntime."""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import yaml

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the test extra: pip install -e '.[test]'")
spec = pytest.importorskip("bioimageio.spec", reason="bioimageio.spec is in the test extra")

from mpfpipe.arch import preset  # noqa: E402
from mpfpipe.cli import main  # noqa: E402
from mpfpipe.errors import DataError  # noqa: E402
from mpfpipe.export.bioimageio import export_bioimageio  # noqa: E402
from mpfpipe.model import Model, save_model  # noqa: E402
from mpfpipe.params import init_params  # noqa: E402


def _check(path):
    descr = spec.load_description(str(path), perform_io_checks=True)
    summary = descr.validation_summary
    assert summary.status in ("valid-format", "passed"), summary.format()
    with zipfile.ZipFile(path) as zf:
        rdf = yaml.safe_load(zf.read("rdf.yaml"))
        x = np.load(io.BytesIO(zf.read("test_input.npy")))
        y = np.load(io.BytesIO(zf.read("test_output.npy")))
        sess = ort.InferenceSession(zf.read("model.onnx"), providers=["CPUExecutionProvider"])
    assert np.abs(sess.run(None, {"raw": x})[0] - y).max() <= 1e-4
    return rdf, x, y


def test_package_is_valid_and_its_weights_reproduce_mpfpipe(tmp_path):
    net = preset("steel", in_channels=2, maps=3, hidden=5, n_classes=3)
    model = Model(net, init_params(net, 0), class_names=["bg", "defect", "edge"],
                  normalisation={"mean": [100.0, 20.0], "std": [30.0, 5.0]})
    sample = np.random.default_rng(0).uniform(0, 200, size=(2, 90, 150)).astype(np.float32)
    out = export_bioimageio(model, tmp_path / "m.zip", authors=["A. Author"], sample=sample)
    rdf, x, y = _check(out)
    assert x.shape == (1, 2, 90, 128) and np.array_equal(x[0], sample[:, :, :128])
    assert y.shape == (1, 3, 90, 128) and np.allclose(y.sum(axis=1), 1.0, atol=1e-5)
    assert rdf["outputs"][0]["axes"][1]["channel_names"] == ["bg", "defect", "edge"]
    assert rdf["weights"]["onnx"]["opset_version"] == 17 and rdf["authors"] == [{"name": "A. Author"}]
    with pytest.raises(DataError, match="sample image"):
        export_bioimageio(model, tmp_path / "n.zip", sample=np.zeros((3, 8, 8)))
    with pytest.raises(DataError, match="5 to 128 characters"):
        export_bioimageio(model, tmp_path / "n.zip", name="abc")
    assert not (tmp_path / "n.zip").exists()


def test_cli_writes_a_package_for_a_zip_output(capsys, tmp_path):
    net = preset("steel", maps=2, hidden=3)
    model = save_model(Model(net, init_params(net, 1), normalisation={"mean": [120.0], "std": [40.0]}),
                       tmp_path / "m.safetensors")
    np.save(tmp_path / "s.npy", np.random.default_rng(2).integers(0, 255, (70, 60)).astype(np.uint8))
    with pytest.raises(SystemExit) as exc:
        main(["export", str(model), str(tmp_path / "m.zip"), "--sample", str(tmp_path / "s.npy"),
              "--name", "tiny steel"])
    out, err = capsys.readouterr()
    assert exc.value.code == 0, err
    rdf, x, _ = _check(tmp_path / "m.zip")
    assert rdf["name"] == "tiny steel" and x.shape == (1, 1, 70, 60)
    with zipfile.ZipFile(tmp_path / "m.zip") as zf:
        assert "# Validation" in zf.read("README.md").decode()


def test_a_section_context_models_channels_are_named_by_section(tmp_path):
    net = preset("steel", in_channels=3, maps=2, hidden=3)
    model = Model(net, init_params(net, 1), normalisation={"mean": [120.0] * 3, "std": [40.0] * 3},
                  section_context=1)
    rdf, x, _ = _check(export_bioimageio(model, tmp_path / "c.zip", authors=["A. Author"]))
    assert rdf["inputs"][0]["axes"][1]["channel_names"] == ["z_minus_1", "z", "z_plus_1"] and x.shape[1] == 3
    with zipfile.ZipFile(tmp_path / "c.zip") as zf:
        readme = zf.read("README.md").decode()
    assert "section z and the 1 section(s) above and below it (z_minus_1, z, z_plus_1" in readme
