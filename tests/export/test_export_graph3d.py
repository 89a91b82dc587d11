"""3D ONNX export: onnxruntime on the graph (Conv and MaxPool with 3D dilations, mirror padding in z, y, x) equals
`segment`'s float32 output (blocks with z halos) to 1e-4, for the ELEKTRONN2-style aniso net and ZNNi's n337 at
their layouts (fewer maps) and a net with uneven halos, on a synthetic volume and an ISBI 2012 crop; the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

onnx = pytest.importorskip("onnx", reason="onnx is in the test extra: pip install -e '.[test]'")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the test extra: pip install -e '.[test]'")

from mpfpipe.arch import FC, Conv, Net, Pool, preset  # noqa: E402
from mpfpipe.cli import main  # noqa: E402
from mpfpipe.errors import ExportError  # noqa: E402
from mpfpipe.export import export_onnx  # noqa: E402
from mpfpipe.export.bioimageio import export_bioimageio  # noqa: E402
from mpfpipe.model import Model, save_model  # noqa: E402
from mpfpipe.params import init_params  # noqa: E402
from mpfpipe.segment import segment  # noqa: E402

NORM = {"mean": [118.0], "std": [37.5]}
NETS = {"aniso": lambda: preset("aniso", maps=3, hidden=4),
        "n337": lambda: preset("n337", maps=3),
        "uneven": lambda: Net((Conv((2, 3, 3), 3), Pool((1, 2, 2)), Conv((2, 2, 2), 4), Pool((2, 1, 1)), FC(5),
                               FC(2, "linear")))}


@pytest.fixture(scope="module", params=sorted(NETS))
def exported(request, tmp_path_factory):
    net = NETS[request.param]()
    folder = tmp_path_factory.mktemp(request.param)
    model = save_model(Model(net, init_params(net, 4), class_names=["cell", "membrane"], normalisation=NORM),
                       folder / "m.safetensors")
    return net, model, export_onnx(model, folder / "m.onnx").output


def _compare(model, onnx_path, vol, tmp_path, block):
    zarr.save_array(str(tmp_path / "in.zarr"), vol)
    segment(model, tmp_path / "in.zarr", tmp_path / "seg.ome.zarr", block=block, workers=0, progress=False, levels=1)
    want = np.asarray(zarr.open_array(str(tmp_path / "seg.ome.zarr"), path="0"))  # (K, Z, Y, X)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"raw": vol[None, None].astype(np.float32)})[0]  # (1, K, Z, Y, X)
    assert got.shape == (1, *want.shape) and got.dtype == np.float32
    return np.abs(got[0] - want).max()


def test_onnxruntime_equals_segment_on_a_synthetic_volume(exported, tmp_path):
    net, model, onnx_path = exported
    vol = np.random.default_rng(1).integers(0, 256, size=(6, 21, 26)).astype(np.uint8)
    assert _compare(model, onnx_path, vol, tmp_path, block=(4, 16, 13)) <= 1e-4  # z halos across blocks


def test_onnxruntime_equals_segment_on_an_isbi_crop(exported, tmp_path, shared_data):
    import tifffile
    _, model, onnx_path = exported
    vol = tifffile.imread(shared_data / "isbi2012" / "train-volume.tif")[3:9, 100:140, 300:348]
    assert _compare(model, onnx_path, np.ascontiguousarray(vol), tmp_path, block=(3, 40, 24)) <= 1e-4


def test_graph_layout_and_metadata(exported):
    net, _, onnx_path = exported
    proto = onnx.load(str(onnx_path))
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["architecture"]) == net.to_dict() and props["window"] == str(net.window)
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", 1, "D", "H", "W"]
    pools = [n for n in proto.graph.node if n.op_type == "MaxPool"]
    # every pool after the first is dilated by the pools before it, per axis
    dz, d = 1, 1
    for node, p3 in zip(pools, net.pools3):
        attrs = {a.name: list(a.ints) for a in node.attribute}
        assert attrs["kernel_shape"] == list(p3) and attrs["dilations"] == [dz, d, d]
        dz, d = dz * p3[0], d * p3[1]


def test_cli_summary_and_bioimageio_refusal(exported, tmp_path, capsys):
    net, model, _ = exported
    with pytest.raises(SystemExit) as exc:
        main(["export", str(model), str(tmp_path / "c.onnx")])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "(N, C, D, H, W)" in out and f"window {'x'.join(map(str, net.window3))}" in out
    with pytest.raises(ExportError, match="a 3D model .* exports as ONNX only"):
        export_bioimageio(model, tmp_path / "m.zip")
    assert not (tmp_path / "m.zip").exists()
