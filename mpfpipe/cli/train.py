"""``mpfpipe train DATASET.zarr --net NAME|FILE --optimizer gd|lbfgs|sgd|adam --out MODEL.safetensors``."""
from __future__ import annotations

import click

from . import cli
from ..options import click_type
from ._common import config_option


def _parse_augment(text):
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
--scheduler tcp://host:8786 or --scheduler-file joins a running cluster (SLURM, Kubernetes, compose).
\b
Outputs beside --out: MODEL.ckpt.npz (checkpoint after every step; --resume continues it exactly),
MODEL.log.jsonl (one JSON line per step), MODEL.loss.png (loss curves). The model is the one with the
lowest validation loss (the last one when the dataset has no validation split).
\b
Examples:
  mpfpipe train isbi.zarr --net n4 --optimizer sgd --batch-size 1 --epochs 5 --out n4.safetensors
  mpfpipe train isbi.zarr --net n4 --optimizer lbfgs --epochs 50 --workers 2 --out n4.safetensors --resume
""")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
@click.option("--net", "net", default="n4", help="Preset (n4, n3, steel) or a YAML/JSON network file.")
@click.option("--maps", type=click.IntRange(min=1), default=None, help="Preset nets: maps of every conv layer.")
@click.option("--hidden", type=click.IntRange(min=1), default=None, help="Preset nets: size of hidden fc layers.")
@click.option("--optimizer", type=click.Choice(["gd", "lbfgs", "sgd", "adam"]), default="gd",
              help="Full-batch GD (Armijo), full-batch L-BFGS, mini-batch SGD (Armijo) or mini-batch Adam.")
@click.option("--out", "out", type=click.Path(dir_okay=False), required=True, help="Model file (.safetensors).")
@click.option("--epochs", type=click.IntRange(min=0), default=10,
              help="Passes over the training images (gd/lbfgs: one iteration each).")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, help="sgd/adam: images per step.")
@click.option("--lr", type=click_type("train", "lr"), default=None,
              help="adam: the step size [1e-3]; the others: first trial step of the line search, then adapted [1].")
@click.option("--lr-halflife", type=click_type("train", "lr_halflife"), default=0.0,
              help="adam: the step halves every this many epochs (0: constant).")
@click.option("--memory", type=click.IntRange(min=1), default=10, help="lbfgs: correction pairs kept.")
@click.option("--balance/--no-balance", default=True,
              help="Class-balanced loss over the whole batch (else mean loss per labelled pixel).")
@click.option("--augment", default="none",
              help="'none' or a list such as 'flip,rot90,rotate,jitter=0.05,crop=256' (seeded by seed, epoch, image; "
                   "crop=N trains on a random NxN region per image and step, exactly, with real context).")
@click.option("--seed", type=int, default=0, help="Weight initialisation, shuffling and augmentation seed.")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32",
              help="Arithmetic of the fragment engine (reduction is always float64).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Local cluster: worker processes [default: cores // threads].")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Local cluster: Numba/BLAS threads per worker [default: cores // workers].")
@click.option("--scheduler", default=None, help="Join a running Dask scheduler, e.g. tcp://host:8786.")
@click.option("--scheduler-file", type=click.Path(dir_okay=False), default=None, help="Join via a scheduler file.")
@click.option("--host", default="127.0.0.1", help="Local cluster: interface to listen on.")
@click.option("--timeout", type=click_type("train", "timeout"), default=10.0, help="Seconds to reach the scheduler.")
@click.option("--stream", is_flag=True, default=None,
              help="Read each image from Zarr in its task instead of holding the data on the workers "
                   "(automatic when the data would need > 25 % of the workers' memory).")
@click.option("--resume", is_flag=True, help="Continue the run of the checkpoint (same options).")
@click.option("--stop", is_flag=True, help="With --resume: end a paused run at its checkpoint, without another "
                                           "step, and write its best model.")
@click.option("--overwrite", is_flag=True, help="Replace an existing model / start a new run over a checkpoint.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint file [default: OUT stem + .ckpt.npz].")
@click.option("--log", "log", type=click.Path(dir_okay=False), default=None,
              help="JSON-lines log [default: OUT stem + .log.jsonl].")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Loss-curve PNG [default: OUT stem + .loss.png].")
@click.option("--max-steps", type=click.IntRange(min=1), default=None,
              help="Stop after this many steps (checkpointed; continue with --resume).")
@click.option("--max-time", default=None,
              help="Training-time budget over the whole run (resumes included), e.g. 7200, 90m, 2h: no step "
                   "starts once it is spent; the best model is written.")
@click.option("--gtol", type=click_type("train", "gtol"), default=0.0, help="gd/lbfgs: stop when |gradient| < gtol.")
@click.option("--validate-every", type=click.IntRange(min=1), default=1, help="Validate every N epochs.")
@click.option("--train-split", default="train", help="Split to train on, or a union such as 'train+val'.")
@click.option("--val-split", default="val", help="Validation split ('' for none).")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
@click.option("--reproducible", is_flag=True,
              help="The same bits on workers with different CPUs (AVX2 and AVX-512 nodes): fixed-order GEMMs "
                   "instead of OpenBLAS, whose kernel depends on the CPU (MPFPIPE_REPRODUCIBLE=1 does the same).")
@config_option
def train_cmd(dataset, augment, val_split, **kw):
    """Train a max-pooling CNN on the whole images of DATASET.zarr with fragment (MPF) gradients on Dask."""
    from ..train import train

    try:
        result = train(dataset, augment=_parse_augment(augment), val_split=val_split or None,
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
