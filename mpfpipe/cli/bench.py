"""``mpfpipe bench engine|distributed|segment|data|export|costmodel``: the benchmarks of `mpfpipe.bench`.

The flags of the single command this replaced still work: ``mpfpipe bench [--net ...]`` is ``bench engine``,
``--distributed`` is ``bench distributed``, ``--peers`` is ``bench peers`` and ``--segment VOLUME`` is ``bench
segment VOLUME`` (whose ``--segment-repeat`` is its ``--repeat``, and the old ``--repeat`` its
``--engine-repeat``).
"""
import json

import click

from . import cli
from ..options import cli_options
from ._common import CONTEXT_SETTINGS, config_option
from .segment import _block

BENCHMARKS = ("engine", "distributed", "segment", "data", "export", "costmodel", "peers")


def _size(ctx, param, values, dims=(2,)):
    out = []
    for v in (values if isinstance(values, (list, tuple)) else [values]):
        try:
            parts = tuple(int(t) for t in v.lower().split("x"))
            if len(parts) not in dims or min(parts) < 1:
                raise ValueError
        except ValueError:
            like = "512x512" + (" or (a 3D net's volume) 32x128x128" if 3 in dims else "")
            raise click.BadParameter(f"{v!r} is not a size like {like}") from None
        out.append(parts)
    return out if isinstance(values, (list, tuple)) else out[0]


def _sizes(ctx, param, values):
    """`bench engine`'s sizes: HxW, or ZxYxX for a 3D net."""
    return _size(ctx, param, values, dims=(2, 3))


def _flag(arg: str) -> str:
    return arg.split("=", 1)[0]  # --segment=VOLUME -> --segment


def _legacy(args: list[str]) -> list[str]:
    """The old single command's flags as a subcommand's command line."""
    if any(_flag(a) == "--peers" for a in args):
        return ["peers", *(a for a in args if _flag(a) != "--peers")]
    if any(_flag(a) == "--distributed" for a in args):
        return ["distributed", *(a for a in args if _flag(a) != "--distributed")]
    if not any(_flag(a) == "--segment" for a in args):
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


def _match_sizes(nets, sizes):
    """A 3D net needs ZxYxX sizes and a 2D net HxW: one clear line, not a failure inside a benchmark process."""
    from ..arch import load_net
    for name in nets or ["n4"]:
        want = load_net(name).ndim
        for s in sizes:
            if len(s) != want:
                raise click.BadParameter(f"net {name} is {want}D: give {'ZxYxX' if want == 3 else 'HxW'} sizes, "
                                         f"not {'x'.join(map(str, s))}", param_hint="'--size'")


def _two_d_only(nets, what: str):
    """The benchmarks of 2D jobs (images, slices) refuse a 3D net in one line."""
    from ..arch import load_net
    for name in nets:
        if load_net(name).ndim == 3:
            raise click.BadParameter(f"net {name} is 3D: `mpfpipe bench {what}` times 2D nets; time a 3D net with "
                                     f"`bench engine` or `bench peers` and a ZxYxX --size", param_hint="'--net'")


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
@cli_options("bench engine", sizes={"callback": _sizes})
def engine_cmd(nets, sizes, modes, phases, repeat, batch, peak):
    """Time the fragment engine. With no options: n4, n3 and steel at 512x512 and steel at 137x60, fragment and
    patch mode, train and infer. A 3D net takes ZxYxX sizes: --net n337 --size 32x128x128."""
    from ..bench import run
    _load_nets(nets)
    _match_sizes(nets, sizes)
    run(nets=list(nets), sizes=list(sizes), modes=modes or ("mpf", "patch"), phases=phases or ("train", "infer"),
        repeat=repeat, batch=batch, peak=peak, emit=_emit)


@bench.command("distributed")
@config_option
@cli_options("bench distributed", size={"callback": _size})
def distributed_cmd(net, size, simulate, task_seconds, images, repeat, workers, threads, scheduler, dataset):
    """The cost of a full-batch gradient evaluation on a cluster, split into broadcast, compute, reduction,
    driver and idle time, with "seconds_per_eval" and "efficiency" (images x task seconds per image / workers /
    seconds per evaluation), e.g.
    mpfpipe bench distributed --simulate --workers 16 --images 4096 --net steel --size 137x60 --task-seconds 0.005
    """
    from ..bench.distributed import measure
    _load_nets([net])
    _two_d_only([net], "distributed")
    measure(net=net, size=size, images=images, workers=workers, threads=threads, scheduler=scheduler,
            simulate=simulate, task_seconds=task_seconds, repeat=repeat, dataset=dataset, emit=_emit)


@bench.command("segment")
@config_option
@click.argument("volume")
@cli_options("bench segment", size={"callback": _size}, block={"callback": _block})
def segment_cmd(volume, net, size, block, workers, threads, repeat, engine_repeat, workdir, instances, model):
    """`mpfpipe segment`'s throughput on VOLUME (Zarr, OME-Zarr, TIFF, FILE.h5:DATASET) as a ratio of the
    engine's on --size at the same thread count; also the pyramid's cost, Zarr vs HDF5 reads and, with
    --instances, the instance step's cost."""
    from ..bench.segment import run
    if model is None:
        _load_nets([net])
        _two_d_only([net], "segment")
    run(volume, net_name=net, size=size, block=block, workers=workers, threads=threads, repeat=repeat,
        engine_repeat=engine_repeat, workdir=workdir, instances=instances, model=model, emit=_emit)


@bench.command("data")
@config_option
@click.argument("data_dir", required=False, type=click.Path(file_okay=False))
@cli_options("bench data")
def data_cmd(data_dir, datasets, as_json):
    """Ingest time, images/s, MB/s, on-disk size and single-image read time of the real datasets in DATA_DIR
    [default: ../shared/data beside the repository]."""
    from ..bench.data import DATASETS, run, table
    rows = run(data_dir, datasets or tuple(DATASETS))
    click.echo("\n".join(json.dumps(r) for r in rows) if as_json else table(rows))


@bench.command("export")
@config_option
@cli_options("bench export", size={"callback": _size})
def export_cmd(net, size, slices, repeat, threads, cluster):
    """Export time, and seconds per slice of onnxruntime against mpfpipe's dense pass and `segment`."""
    from ..bench.export import measure
    names = net.split(",")
    _load_nets(names)
    _two_d_only(names, "export")
    for name in names:
        click.echo(json.dumps(measure(name, size, slices, repeat, threads, cluster)))


@bench.command("peers")
@config_option
@cli_options("bench peers", sizes={"callback": _sizes})
def peers_cmd(nets, sizes, phases, repeat, threads, torch_python, rounds):
    """The engine beside onnxruntime on `mpfpipe export`'s graph of the same model and PyTorch's dilated dense job
    (from a Python that has torch), same nets, sizes and threads, with the same-run matmul peak: one JSON line per
    net, size and phase with the times and ratios, e.g.
    mpfpipe bench peers --net n4 --size 512x512 --threads 2 --torch-python ~/torchref/bin/python
    (a 3D net: --net n337 --size 32x128x128; PyTorch then runs conv3d)."""
    from ..bench.peers import run
    _load_nets(nets)
    _match_sizes(nets or ["n4", "n3", "steel"], sizes)
    run(nets=list(nets) or ["n4", "n3", "steel"], sizes=list(sizes) or [(512, 512)],
        phases=phases or ("infer", "train"), repeat=repeat, threads=threads, torch_python=torch_python,
        rounds=rounds, emit=_emit)


@bench.command("costmodel")
@config_option
@cli_options("bench costmodel")
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
