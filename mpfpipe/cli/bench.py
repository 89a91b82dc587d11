"""``mpfpipe bench``: engine benchmarks as JSON lines on stdout."""
import click

from . import cli
from ..options import click_type
from ._common import config_option, scheduler_option


def _size(ctx, param, values):
    out = []
    for v in values:
        try:
            h, w = (int(t) for t in v.lower().split("x"))
            if h < 1 or w < 1:
                raise ValueError
        except ValueError:
            raise click.BadParameter(f"{v!r} is not a size like 512x512") from None
        out.append((h, w))
    return out


@cli.command()
@config_option
@click.option("--net", "nets", multiple=True, help="Preset or architecture file (repeatable). Default: all cases.")
@click.option("--size", "sizes", multiple=True, callback=_size, help="Image size HxW (repeatable).")
@click.option("--mode", "modes", multiple=True, type=click.Choice(["mpf", "patch"]),
              help="Fragment mode over whole images and/or the patch-mode baseline (default both).")
@click.option("--phase", "phases", multiple=True, type=click.Choice(["train", "infer"]),
              help="Training step (forward+backward) and/or inference (default both).")
@click.option("--repeat", default=5, type=click.IntRange(1), help="Timed runs per case (median reported).")
@click.option("--batch", default=256, type=click.IntRange(1), help="Windows per patch-mode batch.")
@click.option("--peak/--no-peak", default=True, help="Also measure numpy's float32 matmul peak.")
@click.option("--distributed", is_flag=True,
              help="Time distributed gradient evaluations instead (one JSON line per evaluation, then medians).")
@click.option("--simulate", is_flag=True, help="--distributed: tasks sleep --task-seconds per image (no kernels).")
@click.option("--task-seconds", type=click_type("bench", "task_seconds"), default=0.005,
              help="--simulate: seconds per image of a simulated gradient task.")
@click.option("--images", type=click_type("bench", "images"), default=256,
              help="--distributed: images per evaluation.")
@click.option("--workers", type=click_type("bench", "workers"), default=None,
              help="--distributed, --segment: local worker processes [default: one per core].")
@click.option("--threads", type=click_type("bench", "threads"), default=None,
              help="--distributed, --segment: Numba/BLAS threads per local worker [default: cores // workers].")
@scheduler_option("--distributed: ")
@click.option("--dataset", type=click.Path(exists=True, file_okay=False), default=None,
              help="--distributed: real gradients on this dataset's images [default: synthetic EM of --size].")
@click.option("--segment", "volume", default=None,
              help="Instead: segment this volume (Zarr, OME-Zarr, TIFF, FILE.h5:DATASET) with the first --net "
                   "(default n3, random weights) and compare with the engine on the first --size (default "
                   "512x512) at the same thread count; also the pyramid's cost and Zarr vs HDF5 reads.")
@click.option("--segment-repeat", default=2, type=click.IntRange(1),
              help="--segment: runs with and without the pyramid (medians reported).")
@click.option("--workdir", type=click.Path(file_okay=False, exists=True), default=None,
              help="--segment: where the outputs are written (a temporary folder in it, removed at the end).")
def bench(nets, sizes, modes, phases, repeat, batch, peak, distributed, simulate, task_seconds, images, workers,
          threads, scheduler, dataset, volume, segment_repeat, workdir):
    """Time the fragment engine: one JSON object per case on stdout.

    With no options: n4, n3 and steel at 512x512 and steel at 137x60, fragment and patch mode, train and infer.

    With --distributed: the cost of a full-batch gradient evaluation on a cluster, split into broadcast, compute,
    reduction, driver and idle time, with "seconds_per_eval" and "efficiency" (images x task seconds per image /
    workers / seconds per evaluation), e.g.
    mpfpipe bench --distributed --simulate --workers 16 --images 4096 --net steel --size 137x60 --task-seconds 0.005

    With --segment VOLUME: `mpfpipe segment`'s throughput as a ratio of the engine's (mpfpipe.segment.bench).
    """
    from ..arch import load_net
    from ..bench import dumps, run

    for net in nets:  # a bad name fails here, in one line, not inside a benchmark subprocess
        load_net(net)
    if distributed:
        from ..train.bench import measure
        if len(nets) > 1 or len(sizes) > 1:
            raise click.UsageError("--distributed takes one --net and one --size")
        measure(net=nets[0] if nets else "steel", size=sizes[0] if sizes else (137, 60), images=images,
                workers=workers, threads=threads, scheduler=scheduler, simulate=simulate,
                task_seconds=task_seconds, repeat=repeat, dataset=dataset, emit=lambda r: click.echo(dumps(r)))
        return
    if simulate:
        raise click.UsageError("--simulate needs --distributed")
    if volume:
        from ..segment.bench import run as segment_bench
        segment_bench(volume, net_name=nets[0] if nets else "n3", size=sizes[0] if sizes else (512, 512),
                      workers=workers, threads=threads, repeat=segment_repeat, engine_repeat=repeat,
                      workdir=workdir, emit=lambda r: click.echo(dumps(r)))
        return
    run(nets=list(nets), sizes=list(sizes), modes=modes or ("mpf", "patch"), phases=phases or ("train", "infer"),
        repeat=repeat, batch=batch, peak=peak, emit=lambda r: click.echo(dumps(r)))
