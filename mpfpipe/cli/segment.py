"""``mpfpipe segment MODEL INPUT OUTPUT``: whole-volume segmentation into OME-Zarr (see `mpfpipe.segment`)."""
from __future__ import annotations

import json

import click

from . import cli
from ..options import click_type
from ._common import config_option, scheduler_option


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
                   "blocks, reading ahead and writing behind the forward passes (folder input: Y,X tiles of each "
                   "down-sampled image, bounding memory; the result does not depend on it).")
@click.option("--workers", type=click_type("segment", "workers"), default=None,
              help="Local worker processes (default: one per core; 0 = no Dask, run in this process).")
@click.option("--threads", type=click_type("segment", "threads"), default=None,
              help="Kernel threads per worker (default: cores / workers).")
@scheduler_option()
@click.option("--overwrite", is_flag=True, help="Replace an existing OUTPUT (otherwise an unfinished one resumes).")
@click.option("--quantize", is_flag=True, help="Store probabilities as uint8 (round(255 p)) instead of float32.")
@click.option("--threshold", type=click_type("segment", "threshold"), default=None,
              help="Label = p[positive class] > THRESHOLD instead of the arg-max.")
@click.option("--positive", type=click_type("segment", "positive"), default=1,
              help="Class index that --threshold applies to.")
@click.option("--levels", type=click_type("segment", "levels"), default=None,
              help="Pyramid levels including full resolution, each halving y and x (default: down to a smaller side "
                   "<= 256 pixels; 1 = no pyramid).")
@click.option("--tta", is_flag=True,
              help="Test-time augmentation: average the class probabilities over the 8 flips and 90-degree turns "
                   "(8x the compute; exact for any block size).")
@click.option("--detect-threshold", type=click_type("segment", "detect_threshold"), default=None,
              help="Folder input: flag an image when its mask has more defect pixels than this (source pixels) "
                   "[default: the model's rule chosen on validation, else 0].")
@click.option("--include", multiple=True, metavar="GLOB",
              help="Folder input: segment only images whose path relative to FOLDER matches (repeatable), e.g. "
                   "'*.jpg' to leave out the magnetic tiles' PNG masks.")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Folder input: leave out matching images (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def segment(model, input, output, block, workers, threads, scheduler, overwrite, quantize, threshold, positive,
            levels, tta, detect_threshold, include, exclude, as_json, quiet):
    """Segment INPUT (Zarr array, OME-Zarr image, mpfpipe dataset, TIFF stack or HDF5 dataset FILE.h5:DATASET,
    e.g. sample_A.h5:volumes/raw, read blockwise) with MODEL into OUTPUT, an OME-Zarr 0.5 image of class
    probabilities with the segmentation under labels/, both with a multiscale pyramid. Blocks already done in an
    unfinished OUTPUT are skipped (automatic resume); done blocks whose chunks were lost or damaged since (checked
    against their checksums) are computed again, in a complete OUTPUT too. The summary gives the throughput
    (voxels/s) and the time in forward passes and in reads and writes.

    INPUT may also be a FOLDER of JPEG / PNG / TIFF images (searched recursively; any size; grey or RGB with
    equal channels): OUTPUT is then a folder with masks/<relative path>/<stem>.png (class ids, the source's size)
    and detections.csv (image, height, width, defect_pixels, flagged, max_probability, error). The model's
    down-sampling is applied to each image and the mask brought back to its size; a bad image is reported by
    name and the others go on; a rerun skips the images already done. The summary gives the seconds per image."""
    from ..segment import segment as run
    from ..errors import FolderSegmentError

    try:
        result = run(model, input, output, block=block, workers=workers, threads=threads, scheduler=scheduler,
                     overwrite=overwrite, quantize=quantize, threshold=threshold, positive=positive,
                     progress=not quiet, levels=levels, tta=tta, detect_threshold=detect_threshold,
                     include=include, exclude=exclude)
    except KeyboardInterrupt:
        from ..errors import Interrupted
        raise Interrupted(f"the finished blocks / images of {output} are kept; rerun the same command (without "
                          "--overwrite) to compute the rest") from None
    except FolderSegmentError as exc:  # every failed image by name, the summary, then the one-line error
        for line in exc.result.errors if exc.result else ():
            click.echo(f"failed: {line}", err=True)
        if exc.result:
            click.echo(json.dumps(exc.result.to_dict(), indent=2) if as_json else exc.result.summary())
        raise
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        click.echo(result.summary())
