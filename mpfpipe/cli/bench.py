"""``mpfpipe bench``: engine benchmarks as JSON lines on stdout."""
import click

from . import cli
from ._common import config_option


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
def bench(nets, sizes, modes, phases, repeat, batch, peak):
    """Time the fragment engine: one JSON object per case on stdout.

    With no options: n4, n3 and steel at 512x512 and steel at 137x60, fragment and patch mode, train and infer.
    """
    from ..arch import load_net
    from ..bench import dumps, run

    for net in nets:  # a bad name fails here, in one line, not inside a benchmark subprocess
        load_net(net)
    run(nets=list(nets), sizes=list(sizes), modes=modes or ("mpf", "patch"), phases=phases or ("train", "infer"),
        repeat=repeat, batch=batch, peak=peak, emit=lambda r: click.echo(dumps(r)))
