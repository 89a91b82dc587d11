"""bioimage.io model package: the ONNX graph of `graph` with the model's description (``rdf.yaml``, format 0.5),
documentation and a test input / output pair, zipped, as the bioimage.io model zoo and its tools (bioimageio.core,
ilastik, deepImageJ, QuPath...) take it.

The test output is mpfpipe's own dense pass (`fragment.dense_forward`, what `segment` writes) on the test input,
so a tool that runs the package's ONNX weights on ``test_input.npy`` and compares with ``test_output.npy`` checks
the export against mpfpipe itself. The input is raw pixels: normalisation and mirror padding are in the graph, so
the description has no pre-processing; any H and W are allowed.
"""
from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import yaml

from .. import _safety
from ..errors import DataError, ExportError, ValueFormatError
from ..data.context import map_names
from ..fragment import dense_forward
from ..model import Model, load_model
from .graph import OPSET, build_graph

FORMAT_VERSION = "0.5.4"
PAPER = {"text": "Masci, Giusti, Ciresan, Fricout & Schmidhuber, A fast learning algorithm for image segmentation "
                 "with max-pooling convolutional networks, ICIP 2013",
         "url": "https://arxiv.org/abs/1302.1690"}


def read_sample(path, model: Model) -> np.ndarray:
    """The sample image file as (C, H, W), read as ingest and folder inference read images
    (`mpfpipe.data.imagefile`; a .npy array as it is), refused like them when the model cannot take it."""
    from ..data.imagefile import check_for_model
    from ..data.sources import read_file, to_chw
    path = Path(path)
    if path.suffix.lower() == ".npy":
        from ..data.imagefile import read_npy
        arr = read_npy(path, "sample ")
        img = arr[None] if arr.ndim == 2 else arr
    else:
        img = to_chw(read_file(path, "image"), str(path))
    prov = model.provenance if isinstance(model.provenance, dict) else {}
    return check_for_model(img, model.net.in_channels, prov.get("input_dtype"), f"sample {path}")


def _test_input(model: Model, sample, size: int = 128) -> np.ndarray:
    """(1, C, h, w) float32: the top-left crop (at most ``size`` square) of ``sample`` ((H, W) or (C, H, W)), or,
    without one, seeded noise spread like the training data (mean +- std of the model's normalisation)."""
    C = model.net.in_channels
    if sample is None:
        mean = np.asarray(model.normalisation["mean"], np.float64).reshape(C, 1, 1)
        std = np.asarray(model.normalisation["std"], np.float64).reshape(C, 1, 1)
        x = mean + np.where(std > 0, std, 1.0) * np.random.default_rng(0).standard_normal((C, size, size))
        return x[None].astype(np.float32)
    x = np.asarray(sample)
    x = x[None] if x.ndim == 2 else x
    if x.ndim != 3 or x.shape[0] != C:
        raise DataError(f"the sample image has shape {np.asarray(sample).shape}; the net takes (H, W) or ({C}, H, W)")
    return np.ascontiguousarray(x[:, :size, :size], dtype=np.float32)[None]


def _readme(model: Model, source: str) -> str:
    net = model.net
    prov = {k: v for k, v in model.provenance.items() if isinstance(v, (str, int, float))}
    lines = [f"# {net.name}: max-pooling CNN pixel classifier (mpfpipe)", "",
             f"{net.describe()}.", "",
             "Trained with mpfpipe's max-pooling fragments (MPF): the whole image goes through the network in one "
             "pass and every pixel gets the output of the patch network on the window centred on it "
             f"({net.window}x{net.window}). The ONNX graph computes the same dense output with stride-1 max "
             "pooling and dilated convolutions.", "",
             "## Inputs and outputs", "",
             f"- `raw`: raw pixels, float32 (batch, {net.in_channels} channel(s), y, x), any size. The "
             f"normalisation (mean {model.normalisation['mean']}, std {model.normalisation['std']}) and the "
             "mirror padding (numpy's `symmetric`) are inside the graph."
             + (f" The channels are section z and the {model.section_context} section(s) above and below it "
                f"({', '.join(map_names(model.section_context, net.in_channels))}; mirrored at the ends of the "
                "stack)." if model.section_context else ""),
             f"- `probabilities`: float32 (batch, {net.n_classes}, y, x), the softmax over the classes "
             f"{list(model.class_names)}.", "",
             "## Training", "", f"Source model: `{source}`.", ""]
    lines += [f"- {k}: {v}" for k, v in sorted(prov.items())] or ["- (no provenance recorded)"]
    lines += ["", "# Validation", "",
              "`test_output.npy` is mpfpipe's own dense forward pass (`mpfpipe.fragment.dense_forward`, what "
              "`mpfpipe segment` writes) on `test_input.npy`; the ONNX weights reproduce it to 1e-4 or better "
              "(mpfpipe's tests compare onnxruntime with `segment`).", ""]
    return "\n".join(lines)


def describe(model: Model, *, name: str, authors, license: str, tags) -> dict:
    """The package's ``rdf.yaml`` as a dict (bioimage.io model description, format 0.5)."""
    net = model.net
    space = [{"type": "space", "id": a, "size": {"min": 1, "step": 1}} for a in ("y", "x")]
    same = [{"type": "space", "id": a, "size": {"tensor_id": "raw", "axis_id": a}} for a in ("y", "x")]
    return {
        "format_version": FORMAT_VERSION, "type": "model", "name": name,
        "description": f"{net.describe()}; dense max-pooling CNN pixel classifier exported by mpfpipe",
        "authors": [{"name": a} for a in authors], "cite": [PAPER], "license": license,
        "documentation": "README.md", "tags": list(tags),
        "inputs": [{"id": "raw", "description": "raw pixels (normalised inside the model)",
                    "axes": [{"type": "batch"},
                             {"type": "channel",
                              "channel_names": map_names(model.section_context, net.in_channels)},
                             *space],
                    "test_tensor": {"source": "test_input.npy"}, "data": {"type": "float32"}}],
        "outputs": [{"id": "probabilities", "description": "class probabilities (softmax)",
                     "axes": [{"type": "batch"},
                              {"type": "channel", "channel_names": [str(c) for c in model.class_names]}, *same],
                     "test_tensor": {"source": "test_output.npy"},
                     "data": {"type": "float32", "range": [0.0, 1.0]}}],
        "weights": {"onnx": {"source": "model.onnx", "opset_version": OPSET}},
        "config": {"mpfpipe": {"window": net.window, "stride": net.stride, "padding": model.padding,
                               "architecture": net.to_dict()}},
    }


def export_bioimageio(model, output, *, name: str | None = None, authors=("unknown",), license: str = "CC-BY-4.0",
                      tags=("segmentation", "pixel-classification", "mpfpipe"), sample=None,
                      overwrite: bool = False) -> Path:
    """Write ``model`` (path or `Model`) as a bioimage.io model package (a .zip) at ``output``; ``sample``: an
    image ((H, W) or (C, H, W)) whose top-left crop becomes the test input (default: seeded noise)."""
    output = Path(output)
    sample_path = None if sample is None or isinstance(sample, np.ndarray) else sample
    _safety.check_outputs([("output", output, ("bioimageio",))], overwrite=overwrite,
                          inputs=[m for m in (model, sample_path) if not isinstance(m, Model)])
    source = "(in memory)"
    if not isinstance(model, Model):
        source = str(model)
        model = load_model(model)
    if model.net.ndim == 3:  # its test input and axes would be (b, c, z, y, x): not written yet
        raise ExportError(f"{source}: a 3D model ({model.net.name}) exports as ONNX only (mpfpipe export MODEL "
                          "OUT.onnx); bioimage.io packages take 2D models")
    if sample_path is not None:
        sample = read_sample(sample_path, model)
    if not list(authors):
        raise ValueFormatError("a bioimage.io package needs at least one author")
    name = name or f"mpfpipe {model.net.name}"
    if not 5 <= len(name) <= 128:
        raise ValueFormatError(f"bioimage.io model name {name!r}: use 5 to 128 characters")
    proto = build_graph(model)
    x = _test_input(model, sample)
    y = dense_forward(model.net, model.params, _normalised(model, x[0]))[None].astype(np.float32)
    rdf = describe(model, name=name, authors=authors, license=license, tags=tags)
    files = {"rdf.yaml": yaml.safe_dump(rdf, sort_keys=False).encode(), "model.onnx": proto.SerializeToString(),
             "README.md": _readme(model, source).encode(), "test_input.npy": _npy(x), "test_output.npy": _npy(y)}
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for fname, data in files.items():
                zf.writestr(fname, data)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return output


def _normalised(model: Model, raw: np.ndarray) -> np.ndarray:
    from ..data import normalise
    return normalise(raw, model.normalisation)


def _npy(a: np.ndarray) -> bytes:
    import io
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()
