"""``mpfpipe warmup``: compile the engine's and the instance step's kernels into Numba's cache, once per machine or
image."""
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
    from ..data.warm import INSTANCE_JOBS
    from ..warmup import warmup as run
    out = run(tuple(dtypes) or ("float32",), variants=tuple(variants) or ("serial", "parallel"))
    # the instance step's flooding and merging (`segment --instances`): no dtype or thread variant of their own
    inst = run(("float32",), variants=("serial",), registry=INSTANCE_JOBS)
    out = {"compiled": out["compiled"] + inst["compiled"], "ready": out["ready"] + inst["ready"],
           "seconds": out["seconds"] + inst["seconds"], "cache": out["cache"]}
    click.echo(json.dumps(out))
