"""``mpfpipe segment MODEL INPUT OUTPUT``: whole-volume segmentation into OME-Zarr (see `mpfpipe.segment`)."""
from __future__ import annotations

import json

import click

from . import cli
from ..options import cli_options
from ._common import config_option


def _block(ctx, param, value):
    from ..errors import DataError
    from ..values import parse_block
    if value is None:  # the net's default (segment.blocks.default_block)
        return None
    try:
        return parse_block(value)
    except DataError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


@cli.command()
@config_option
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.argument("input")
@click.argument("output")
@cli_options("segment", block={"callback": _block})
def segment(model, input, output, block, workers, threads, scheduler, overwrite, quantize, threshold, positive,
            levels, tta, detect_threshold, include, exclude, instances, instance_threshold, instance_seed_distance,
            instance_merge_threshold, instance_agglomeration, instance_merge_score, instance_merge_quantile,
            instance_smooth, instance_min_size, instance_margin, instance_block, link_slices, instance_link_overlap,
            as_json, quiet):
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

    kwargs = dict(block=block, workers=workers, threads=threads, scheduler=scheduler, quantize=quantize,
                  threshold=threshold, positive=positive, progress=not quiet, levels=levels, tta=tta,
                  detect_threshold=detect_threshold, include=include, exclude=exclude)
    if instances:
        from ..segment.instances import segment_and_label
        opts = {"threshold": instance_threshold, "seed_distance": instance_seed_distance,
                "merge_threshold": instance_merge_threshold, "agglomeration": instance_agglomeration,
                "merge_score": instance_merge_score, "merge_quantile": instance_merge_quantile,
                "smooth": instance_smooth, "min_size": instance_min_size,
                "margin": instance_margin, "block": instance_block, "link_slices": link_slices or None,
                "link_overlap": instance_link_overlap}
        try:
            seg, inst = segment_and_label(model, input, output, instance_options=opts, overwrite=overwrite, **kwargs)
        except KeyboardInterrupt:
            from ..errors import Interrupted
            raise Interrupted(f"the finished blocks of {output} are kept; rerun the same command (without "
                              "--overwrite) to compute the rest") from None
        if as_json:
            click.echo(json.dumps({"segment": seg.to_dict() if seg else None, "instances": inst.to_dict()}, indent=2))
        else:
            click.echo((seg.summary() + "\n" if seg else "") + inst.summary())
        return
    try:
        result = run(model, input, output, overwrite=overwrite, **kwargs)
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
