"""``mpfpipe bench engine|distributed|segment|data|export|costmodel``: the benchmarks of `mpfpipe.bench`.

The flags of the single command this replaced still work: ``mpfpipe bench [--net ...]`` is ``bench engine``,
``--distributed`` is ``bench distributed`` and ``--segment VOLUME`` is ``bench segment VOLUME`` (whose
``--segment-repeat`` is its ``--repeat``, and the old ``--repeat`` its ``--engine-repeat``).
"""
import json

import click

from . import cli
from ..options import click_type
from ._common import CONTEXT_SETTINGS, config_option, scheduler_option

BENCHMARKS = ("engine", "distributed", "segment", "data", "export", "costmodel")


def _size(ctx, param, values):
    out = []
    for v in (values if isinstance(values, (list, tuple)) else [values]):
        try:
            h, w = (int(t) for t in v.lower().split("x"))
            if h < 1 or w < 1:
                raise ValueError
        except ValueError:
            raise click.BadParameter(f"{v!r} is not a size like 512x512") from None
        out.append((h, w))
    return out if isinstance(values, (list, tuple)) else out[0]


def _legacy(args: list[str]) -> list[str]:
    """The old single command's flags as a subcommand's command line."""
    flag = lambda a: a.split("=", 1)[0]  # noqa: E731
    if any(flag(a) == "--distributed" for a in args):
        return ["distributed", *(a for a in args if flag(a) != "--distributed")]
    if not any(flag(a) == "--segment" for a in args):
        return ["engine", *args]
    rename = {"--segment-repeat": "--repeat", "--repeat": "--engine-repeat"}
    out, volume, rest = [], None, iter(args)
    for a in rest:
        name, eq, value = a.partition("=")
        if name == "--segment":
            volume = value if eq else next(rest, "")
        else:
            out.append(rename.get(name, name) + (eq + value))
    return ["segment", volume, *out]


class _BenchGroup(click.Group):
    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = _legacy(list(args))
        elif not args:
            args = ["engine"]
        return super().parse_args(ctx, args)


def _emit(record):
    from ..bench import dumps
    click.echo(dumps(record))


def _load_nets(nets):
    from ..arch import load_net
    for net in nets:  # a bad name fails here, in one line, not inside a benchmark subprocess
        load_net(net)


@cli.group("bench", cls=_BenchGroup, context_settings=CONTEXT_SETTINGS, epilog="""\b
Plain `mpfpipe bench [OPTIONS]` runs `bench engine`; --distributed and --segment VOLUME (the flags of the old
single command) run `bench distributed` and `bench segment VOLUME`. Every benchmark takes --config FILE; see
`mpfpipe bench NAME --help` for its options and their defaults.""")
def bench():
    """Time mpfpipe: one JSON object per case on stdout (the data benchmark prints a table)."""


@bench.command("engine")
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
def engine_cmd(nets, sizes, modes, phases, repeat, batch, peak):
    """Time the fragment engine. With no options: n4, n3 and steel at 512x512 and steel at 137x60, fragment and
    patch mode, train and infer."""
    from ..bench import run
    _load_nets(nets)
    run(nets=list(nets), sizes=list(sizes), modes=modes or ("mpf", "patch"), phases=phases or ("train", "infer"),
        repeat=repeat, batch=batch, peak=peak, emit=_emit)


@bench.command("distributed")
@config_option
@click.option("--net", default="steel", help="Preset or architecture file.")
@click.option("--size", default="137x60", callback=_size, help="Image size HxW (synthetic images).")
@click.option("--simulate", is_flag=True, help="Tasks sleep --task-seconds per image (no kernels).")
@click.option("--task-seconds", type=click_type("bench", "task_seconds"), default=0.005,
              help="--simulate: seconds per image of a simulated gradient task.")
@click.option("--images", type=click_type("bench", "images"), default=256, help="Images per evaluation.")
@click.option("--repeat", default=5, type=click.IntRange(1), help="Timed evaluations (medians reported).")
@click.option("--workers", type=click_type("bench", "workers"), default=None,
              help="Local worker processes [default: one per core].")
@click.option("--threads", type=click_type("bench", "threads"), default=None,
              help="Numba/BLAS threads per local worker [default: cores // workers].")
@scheduler_option()
@click.option("--dataset", type=click.Path(exists=True, file_okay=False), default=None,
              help="Real gradients on this dataset's images [default: synthetic EM of --size].")
def distributed_cmd(net, size, simulate, task_seconds, images, repeat, workers, threads, scheduler, dataset):
    """The cost of a full-batch gradient evaluation on a cluster, split into broadcast, compute, reduction,
    driver and idle time, with "seconds_per_eval" and "efficiency" (images x task seconds per image / workers /
    seconds per evaluation), e.g.
    mpfpipe bench distributed --simulate --workers 16 --images 4096 --net steel --size 137x60 --task-seconds 0.005
    """
    from ..bench.distributed import measure
    _load_nets([net])
    measure(net=net, size=size, images=images, workers=workers, threads=threads, scheduler=scheduler,
            simulate=simulate, task_seconds=task_seconds, repeat=repeat, dataset=dataset, emit=_emit)


@bench.command("segment")
@config_option
@click.argument("volume")
@click.option("--net", default="n3", help="Preset or architecture file (random weights).")
@click.option("--size", default="512x512", callback=_size, help="Image size HxW of the engine's case.")
@click.option("--workers", type=click_type("bench", "workers"), default=None,
              help="Local worker processes [default: one per core].")
@click.option("--threads", type=click_type("bench", "threads"), default=None,
              help="Numba/BLAS threads per local worker [default: cores // workers].")
@click.option("--repeat", default=2, type=click.IntRange(1),
              help="Segment runs with and without the pyramid (medians reported).")
@click.option("--engine-repeat", default=5, type=click.IntRange(1), help="Timed runs per engine case.")
@click.option("--workdir", type=click.Path(file_okay=False, exists=True), default=None,
              help="Where the outputs are written (a temporary folder in it, removed at the end).")
def segment_cmd(volume, net, size, workers, threads, repeat, engine_repeat, workdir):
    """`mpfpipe segment`'s throughput on VOLUME (Zarr, OME-Zarr, TIFF, FILE.h5:DATASET) as a ratio of the
    engine's on --size at the same thread count; also the pyramid's cost and Zarr vs HDF5 reads."""
    from ..bench.segment import run
    _load_nets([net])
    run(volume, net_name=net, size=size, workers=workers, threads=threads, repeat=repeat,
        engine_repeat=engine_repeat, workdir=workdir, emit=_emit)


@bench.command("data")
@config_option
@click.argument("data_dir", required=False, type=click.Path(file_okay=False))
@click.option("--dataset", "datasets", multiple=True, type=click.Choice(["isbi2012", "magnetic_tile", "neu_seg"]),
              help="Only these datasets (repeatable) [default: all three].")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per dataset instead of the table.")
def data_cmd(data_dir, datasets, as_json):
    """Ingest time, images/s, MB/s, on-disk size and single-image read time of the real datasets in DATA_DIR
    [default: ../shared/data beside the repository]."""
    from ..bench.data import DATASETS, run, table
    rows = run(data_dir, datasets or tuple(DATASETS))
    click.echo("\n".join(json.dumps(r) for r in rows) if as_json else table(rows))


@bench.command("export")
@config_option
@click.option("--net", default="steel,n3,n4", help="Comma-separated presets or network files.")
@click.option("--size", default="512x512", callback=_size, help="Slice size HxW.")
@click.option("--slices", default=4, type=click.IntRange(1), help="Slices of the segmented volume.")
@click.option("--repeat", default=5, type=click.IntRange(1), help="Timed runs per measurement (median reported).")
@click.option("--threads", type=click.IntRange(1), default=None, help="onnxruntime intra-op threads [default: cores].")
@click.option("--cluster/--no-cluster", default=True, help="Also time segment on the default LocalCluster.")
def export_cmd(net, size, slices, repeat, threads, cluster):
    """Export time, and seconds per slice of onnxruntime against mpfpipe's dense pass and `segment`."""
    from ..bench.export import measure
    names = net.split(",")
    _load_nets(names)
    for name in names:
        click.echo(json.dumps(measure(name, size, slices, repeat, threads, cluster)))


@bench.command("costmodel")
@config_option
@click.option("--workers", default="2,4,8,16,32", help="Comma-separated worker counts of the simulated grid.")
@click.option("--repeat", default=3, type=click.IntRange(1), help="Evaluations per grid point.")
@click.option("--steel-seconds", default=0.012, type=float,
              help="Measured one-thread seconds of a steel 137x60 training step (mpfpipe bench engine).")
@click.option("--n4-seconds", default=6.6, type=float,
              help="Measured one-thread seconds of an n4 512x512 training step (mpfpipe bench engine).")
@click.option("--rows", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Fit these saved rows (the JSON --out wrote) instead of measuring.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the fit, projections and rows.")
def costmodel_cmd(workers, repeat, steel_seconds, n4_seconds, rows, out):
    """Fit the cost model of a distributed evaluation to simulated measurements and project it to larger
    clusters (mpfpipe.bench.costmodel)."""
    from ..bench.costmodel import run
    saved = None
    if rows:
        with open(rows) as fh:
            saved = json.load(fh)["measured"]
    result = run([int(w) for w in workers.split(",")], repeat, steel_seconds, n4_seconds, rows=saved,
                 emit=lambda r: click.echo(json.dumps(r)))
    if out:
        with open(out, "w") as fh:
            json.dump(result, fh, indent=1)
