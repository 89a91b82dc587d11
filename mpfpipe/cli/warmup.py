"""``mpfpipe warmup``: compile the engine's kernels into Numba's cache, once per machine or image."""
import json

import click

from . import cli
from ..options import cli_options
from ._common import config_option


@cli.command()
@config_option
@cli_options("warmup")
def warmup(dtypes, variants):
    """Compile every kernel for this CPU into the cache, so that later processes (Dask workers, containers,
    segmentation blocks) start computing at once.

    Processes started together share the work: each kernel group is compiled by one of them while the others
    compile the next or wait. Run it once after installing (deploy/Dockerfile does); without it the first
    training or segmentation run does the same. Prints one JSON line: what this process compiled, what was
    ready, seconds and the cache folder.
    """
    from ..warmup import warmup as run
    click.echo(json.dumps(run(tuple(dtypes) or ("float32",), variants=tuple(variants) or ("serial", "parallel"))))
