"""ONNX export: onnxruntime's probabilities on raw pixels equal `segment`'s (float32 OME-Zarr output) to 1e-4,
for the steel and n3 presets at their real sizes, on a synthetic image (always) and an ISBI 2012 crop (when the
data is there); the mirror padding for images smaller than the window, several channels with their own
normalisation, every activation, batches; the CLI contract."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import zarr

onnx = pytest.importorskip("onnx", reason="onnx is in the test extra: pip install -e '.[test]'")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the test extra: pip install -e '.[test]'")

from mpfpipe.arch import preset  # noqa: E402
from mpfpipe.cli import main  # noqa: E402
from mpfpipe.data import normalise  # noqa: E402
from mpfpipe.errors import OutputExistsError  # noqa: E402
from mpfpipe.export import ExportError, build_graph, export_onnx  # noqa: E402
from mpfpipe.fragment import dense_forward  # noqa: E402
from mpfpipe.model import Model, save_model  # noqa: E402
from mpfpipe.params import init_params  # noqa: E402
from mpfpipe.segment import segment  # noqa: E402

NORM = {"mean": [118.0], "std": [37.5]}


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _segment_probs(model_path, vol, tmp_path, block):
    zarr.save_array(str(tmp_path / "in.zarr"), vol)
    segment(model_path, tmp_path / "in.zarr", tmp_path / "seg.ome.zarr", block=block, workers=0, progress=False)
    return np.asarray(zarr.open_array(str(tmp_path / "seg.ome.zarr"), path="0"))  # (K, Z, Y, X) float32


@pytest.fixture(scope="module", params=["steel", "n3"])
def exported(request, tmp_path_factory):
    net = preset(request.param)
    folder = tmp_path_factory.mktemp(request.param)
    model = save_model(Model(net, init_params(net, 4), class_names=["cell", "membrane"], normalisation=NORM),
                       folder / "m.safetensors")
    onnx_path = export_onnx(model, folder / "m.onnx").output
    return net, model, onnx_path


def test_onnxruntime_equals_segment_on_a_synthetic_volume(exported, tmp_path):
    net, model, onnx_path = exported
    vol = np.random.default_rng(1).integers(0, 256, size=(2, 45, 53)).astype(np.uint8)
    want = _segment_probs(model, vol, tmp_path, block=(1, 24, 32))  # blocks with halos, not one pass
    got = _session(onnx_path).run(None, {"raw": vol[:, None].astype(np.float32)})[0]  # (N, K, H, W)
    assert got.shape == (2, 2, 45, 53) and got.dtype == np.float32
    assert np.abs(got.transpose(1, 0, 2, 3) - want).max() <= 1e-4
    assert np.allclose(got.sum(axis=1), 1.0, atol=1e-5)


def test_onnxruntime_equals_segment_on_an_isbi_crop(exported, tmp_path, shared_data):
    import tifffile
    net, model, onnx_path = exported
    vol = tifffile.imread(shared_data / "isbi2012" / "train-volume.tif", key=[5])[None, 100:164, 300:380]
    want = _segment_probs(model, np.ascontiguousarray(vol), tmp_path, block=(1, 64, 80))
    got = _session(onnx_path).run(None, {"raw": vol[:, None].astype(np.float32)})[0]
    assert np.abs(got.transpose(1, 0, 2, 3) - want).max() <= 1e-4


def test_model_metadata_travels_with_the_graph(exported):
    net, _, onnx_path = exported
    proto = onnx.load(str(onnx_path))
    onnx.checker.check_model(proto, full_check=True)
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["class_names"]) == ["cell", "membrane"] and json.loads(props["normalisation"]) == NORM
    assert props["padding"] == "symmetric" and int(props["window"]) == net.window and props["downsample"] == "1"
    assert len(json.loads(props["source_model"])["sha256"]) == 64
    assert proto.opset_import[0].version == 17 and {n.op_type for n in proto.graph.node} >= {"Conv", "MaxPool",
                                                                                           "Softmax", "Gather"}


@pytest.mark.parametrize("act", ["stanh", "relu"])
def test_small_images_channels_activations_and_batches(act):
    net = preset("steel", in_channels=3, maps=3, hidden=5, act=act, n_classes=3)
    norm = {"mean": [10.0, 100.0, 50.0], "std": [2.0, 30.0, 1.0]}  # std 1: what ingest stores for a constant channel
    model = Model(net, init_params(net, 2), normalisation=norm)
    sess = ort.InferenceSession(build_graph(model).SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(3)
    for shape in [(2, 3, 7, 5), (1, 3, 1, 1), (1, 3, 40, 17)]:  # smaller than the 34x34 window: reflected again
        raw = rng.uniform(0, 200, size=shape).astype(np.float32)
        got = sess.run(None, {"raw": raw})[0]
        for i in range(shape[0]):
            want = dense_forward(net, model.params, normalise(raw[i], norm))
            assert np.abs(got[i] - want).max() <= 1e-5, shape


def test_cli_export_and_its_errors(capsys, tmp_path):
    net = preset("steel", maps=2, hidden=3)
    model = save_model(Model(net, init_params(net, 1)), tmp_path / "m.safetensors")

    def run(*argv):
        with pytest.raises(SystemExit) as exc:
            main(list(argv))
        out, err = capsys.readouterr()
        return exc.value.code, out, err

    code, out, err = run("export", str(model), str(tmp_path / "m.onnx"), "--json")
    assert code == 0, err
    assert json.loads(out)["opset"] == 17 and (tmp_path / "m.onnx").stat().st_size > 1000
    code, _, err = run("export", str(model), str(tmp_path / "m.onnx"))
    assert code == 1 and err.strip() == (f"error: output {tmp_path / 'm.onnx'} exists; pass --overwrite "
                                         "(overwrite=True) to replace it")
    code, _, _ = run("export", str(model), str(tmp_path / "m.onnx"), "--overwrite", "--opset", "18")
    assert code == 0 and onnx.load(str(tmp_path / "m.onnx")).opset_import[0].version == 18
    (tmp_path / "bad.safetensors").write_bytes(b"not a model")
    code, _, err = run("export", str(tmp_path / "bad.safetensors"), str(tmp_path / "b.onnx"))
    assert code == 1 and err.count("\n") == 1 and "bad.safetensors" in err and not (tmp_path / "b.onnx").exists()
    with pytest.raises(OutputExistsError):
        export_onnx(model, tmp_path / "m.onnx")


def test_missing_onnx_package_is_one_clear_error(monkeypatch, tmp_path):
    net = preset("steel", maps=2, hidden=3)
    monkeypatch.setitem(sys.modules, "onnx", None)  # what `import onnx` meets when it is not installed
    with pytest.raises(ExportError, match=r"pip install 'mpfpipe\[onnx\]'"):
        export_onnx(Model(net, init_params(net, 1)), tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_a_section_context_model_says_what_its_maps_are(tmp_path):
    net = preset("steel", in_channels=3, maps=2, hidden=3)
    model = save_model(Model(net, init_params(net, 1), normalisation={"mean": [120.0] * 3, "std": [40.0] * 3},
                             section_context=1), tmp_path / "m.safetensors")
    proto = onnx.load(str(export_onnx(model, tmp_path / "m.onnx").output))
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["section_context"] == "1"
    assert "sections z-1 .. z+1 of the stack, in the order z_minus_1, z, z_plus_1" in proto.graph.doc_string
    plain = save_model(Model(net, init_params(net, 1), normalisation={"mean": [120.0] * 3, "std": [40.0] * 3}),
                       tmp_path / "p.safetensors")
    proto = onnx.load(str(export_onnx(plain, tmp_path / "p.onnx").output))
    assert {p.key: p.value for p in proto.metadata_props}["section_context"] == "0"
    assert "Section context" not in proto.graph.doc_string
