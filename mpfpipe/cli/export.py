"""``mpfpipe export MODEL OUT.onnx|OUT.zip``: the model as a standard ONNX graph or a bioimage.io model package
(see `mpfpipe.export`)."""
from __future__ import annotations

import json

import click

from . import cli
from ..options import cli_options
from ._common import config_option


@cli.command("export", epilog="""\b
ONNX (OUT.onnx): the graph takes raw pixels 'raw' (N, C, H, W) float32 of any size and returns 'probabilities'
(N, K, H, W); normalisation and mirror padding are inside it; MPF becomes stride-1 max pooling with dilated
convolutions. bioimage.io (OUT.zip, or --format bioimageio): that graph with rdf.yaml (model description 0.5),
README.md and a test input / output pair computed by mpfpipe itself.
\b
Examples:
  mpfpipe export runs/quickstart/model.safetensors model.onnx
  mpfpipe export runs/quickstart/model.safetensors model.zip --author "A. Author" --sample slice.tif
""")
@config_option
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.argument("output", type=click.Path(dir_okay=False))
@cli_options("export")
def export(model, output, fmt, opset, name, authors, license_, sample, overwrite, as_json):
    """Write MODEL (.safetensors) as OUTPUT: an ONNX file (the dense network from raw pixels to class
    probabilities, runnable by onnxruntime and any other ONNX runtime) or a bioimage.io model package. Needs the
    onnx package (pip install 'mpfpipe[onnx]')."""
    if fmt == "auto":
        fmt = "bioimageio" if output.lower().endswith(".zip") else "onnx"
    if fmt == "bioimageio":
        from ..export.bioimageio import export_bioimageio
        path = export_bioimageio(model, output, name=name, authors=authors or ("unknown",), license=license_,
                                 sample=sample, overwrite=overwrite)
        click.echo(f"{path}: bioimage.io model package (rdf.yaml, model.onnx, README.md, test tensors)")
        return
    from ..export import export_onnx

    result = export_onnx(model, output, opset=opset, overwrite=overwrite)
    if as_json:
        click.echo(json.dumps(result.__dict__, indent=2))
    else:
        click.echo(result.summary())
