"""``mpfpipe segment MODEL INPUT OUTPUT``: whole-volume segmentation into OME-Zarr (see `mpfpipe.segment`)."""
from __future__ import annotations

import json

import click

from . import cli
from ..options import click_type
from ._common import config_option


def _block(ctx, param, value):
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        parts = [str(v) for v in value]
    else:
        parts = str(value).replace("x", ",").split(",")
    try:
        sizes = tuple(int(p) for p in parts if p.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r}: give Z,Y,X block sizes, e.g. 1,512,512", ctx=ctx, param=param) from None
    if len(sizes) == 2:
        sizes = (1, *sizes)
    if len(sizes) != 3 or min(sizes) < 1:
        raise click.BadParameter(f"{value!r}: give Z,Y,X (or Y,X) positive block sizes", ctx=ctx, param=param)
    return sizes


@cli.command()
@config_option
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.argument("input")
@click.argument("output")
@click.option("--block", callback=_block, default="1,512,512",
              help="Block size Z,Y,X (or Y,X): one output chunk per block; a Dask task runs up to 8 consecutive "
                   "blocks, reading ahead and writing behind the forward passes.")
@click.option("--workers", type=click_type("segment", "workers"), default=None,
              help="Local worker processes (default: one per core; 0 = no Dask, run in this process).")
@click.option("--threads", type=click_type("segment", "threads"), default=None,
              help="Kernel threads per worker (default: cores / workers).")
@click.option("--scheduler", default=None, help="Join this Dask scheduler (address or scheduler file) instead.")
@click.option("--overwrite", is_flag=True, help="Replace an existing OUTPUT (otherwise an unfinished one resumes).")
@click.option("--quantize", is_flag=True, help="Store probabilities as uint8 (round(255 p)) instead of float32.")
@click.option("--threshold", type=click_type("segment", "threshold"), default=None,
              help="Label = p[positive class] > THRESHOLD instead of the arg-max.")
@click.option("--positive", type=click_type("segment", "positive"), default=1,
              help="Class index that --threshold applies to.")
@click.option("--levels", type=click_type("segment", "levels"), default=None,
              help="Pyramid levels including full resolution, each halving y and x (default: down to a smaller side "
                   "<= 256 pixels; 1 = no pyramid).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def segment(model, input, output, block, workers, threads, scheduler, overwrite, quantize, threshold, positive,
            levels, as_json, quiet):
    """Segment INPUT (Zarr array, OME-Zarr image, mpfpipe dataset, TIFF stack or HDF5 dataset FILE.h5:DATASET,
    e.g. sample_A.h5:volumes/raw, read blockwise) with MODEL into OUTPUT, an OME-Zarr 0.5 image of class
    probabilities with the segmentation under labels/, both with a multiscale pyramid. Blocks already done in an
    unfinished OUTPUT are skipped (automatic resume); done blocks whose chunks were lost or damaged since (checked
    against their checksums) are computed again, in a complete OUTPUT too. The summary gives the throughput
    (voxels/s) and the time in forward passes and in reads and writes."""
    from ..segment import segment as run

    try:
        result = run(model, input, output, block=block, workers=workers, threads=threads, scheduler=scheduler,
                     overwrite=overwrite, quantize=quantize, threshold=threshold, positive=positive,
                     progress=not quiet, levels=levels)
    except KeyboardInterrupt:
        from ..errors import Interrupted
        raise Interrupted(f"the finished blocks of {output} are kept; rerun the same command (without "
                          "--overwrite) to compute the rest") from None
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        click.echo(result.summary())
