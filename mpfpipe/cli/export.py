"""``mpfpipe export MODEL OUT.onnx``: the model as a standard ONNX graph (see `mpfpipe.export`)."""
from __future__ import annotations

import json

import click

from . import cli
from ._common import config_option


@cli.command("export", epilog="""\b
The graph takes raw pixels 'raw' (N, C, H, W) float32 of any size and returns 'probabilities' (N, K, H, W):
normalisation and mirror padding are inside it. MPF becomes stride-1 max pooling with dilated convolutions.
\b
Example:
  mpfpipe export runs/quickstart/model.safetensors model.onnx
  python -c "import onnxruntime as ort, numpy as np; s = ort.InferenceSession('model.onnx'); \\
      print(s.run(None, {'raw': np.zeros((1, 1, 64, 64), np.float32)})[0].shape)"
""")
@config_option
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.argument("output", type=click.Path(dir_okay=False))
@click.option("--opset", type=click.IntRange(13), default=17, help="ONNX opset of the graph.")
@click.option("--overwrite", is_flag=True, help="Replace an existing OUTPUT.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def export(model, output, opset, overwrite, as_json):
    """Write MODEL (.safetensors) as an ONNX file OUTPUT: the dense network from raw pixels to class
    probabilities, runnable by onnxruntime and any other ONNX runtime. Needs the onnx package
    (pip install 'mpfpipe[onnx]')."""
    from ..export import export_onnx

    result = export_onnx(model, output, opset=opset, overwrite=overwrite)
    if as_json:
        click.echo(json.dumps(result.__dict__, indent=2))
    else:
        click.echo(result.summary())
