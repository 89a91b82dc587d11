"""``mpfpipe train DATASET.zarr --net NAME|FILE --optimizer gd|lbfgs|sgd|adam --out MODEL.safetensors``."""
from __future__ import annotations

import click

from . import cli
from ..options import cli_options
from ._common import config_option


def _parse_augment(ctx, param, text):
    """The --augment option, parsed by the data layer; a bad value is a usage error (exit 2)."""
    from ..data import parse_augment
    from ..errors import DataError
    try:
        return parse_augment(text)
    except DataError as exc:
        raise click.BadParameter(str(exc)) from None


@cli.command("train", epilog="""\b
Cluster: by default an embedded Dask LocalCluster on this machine (127.0.0.1 only) of --workers processes,
each with one Dask thread and --threads Numba/BLAS threads (default: one worker per core, 1 thread each).
--scheduler tcp://host:8786 (or a scheduler file) joins a running cluster (SLURM, Kubernetes, compose).
\b
Outputs beside --out: MODEL.ckpt.npz (checkpoint after every step; --resume continues it exactly),
MODEL.log.jsonl (one JSON line per step), MODEL.loss.png (loss curves). The model is the one with the
lowest validation loss (the last one when the dataset has no validation split).
\b
Examples:
  mpfpipe train isbi.zarr --net n4 --optimizer sgd --batch-size 1 --epochs 5 --out n4.safetensors
  mpfpipe train isbi.zarr --net n4 --optimizer lbfgs --epochs 50 --workers 2 --out n4.safetensors --resume
  mpfpipe train isbi3d.zarr --net aniso --optimizer adam --unit 4,128,128 --augment flip,rot90 --out aniso.safetensors
      (a 3D net on a volume dataset from `ingest --volume`: units of 4x128x128 voxels with their halo)
""")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
@cli_options("train", augment={"callback": _parse_augment})
@config_option
def train_cmd(dataset, val_split, **kw):
    """Train a max-pooling CNN on the whole images of DATASET.zarr with fragment (MPF) gradients on Dask."""
    from ..train import train

    try:
        result = train(dataset, val_split=val_split or None,
                       echo=lambda msg: click.echo(msg, err=True), **kw)
    except KeyboardInterrupt:
        from pathlib import Path

        from ..errors import Interrupted
        out = Path(kw["out"])
        ckpt = Path(kw["checkpoint"]) if kw.get("checkpoint") else out.with_name(out.stem + ".ckpt.npz")
        if ckpt.is_file():
            raise Interrupted(f"the checkpoint {ckpt} holds the last finished step; continue with the same "
                              "command plus --resume (or --resume --stop to write its best model now)") from None
        raise Interrupted("before the first step finished: nothing to resume") from None
    click.echo(result.text)
