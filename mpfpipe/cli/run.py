"""``mpfpipe run WORKFLOW.yaml``: ingest -> train -> segment -> evaluate into a run folder (see `mpfpipe.workflow`)."""
from __future__ import annotations

import json as _json

import click

from . import cli
from ..options import cli_options
from ._common import config_option


class _KeyValue(click.ParamType):
    name = "KEY=VALUE"

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple)) and len(value) == 2:
            return tuple(value)
        text = str(value)
        if "=" not in text or not text.split("=", 1)[0].strip():
            self.fail(f"{text!r} is not KEY=VALUE", param, ctx)
        key, val = text.split("=", 1)
        return key.strip(), val


@cli.command("run", epilog="""\b
Workflows shipped in workflows/:
  quickstart.yaml            synthetic EM data, a small net, a few minutes on 2 cores (no downloads)
  isbi2012-membranes.yaml    the paper's membrane experiment (--set data=../shared/data/isbi2012)
  isbi2012-aniso.yaml        the ISBI stack as a volume, the anisotropic 3D net (--set data=...)
  surface-defects.yaml       the paper's steel experiment (--set data=../shared/data/magnetic_tile)
  neu-seg-steel.yaml         the steel protocol on NEU-Seg steel strips (--set data=../shared/data/neu_seg)
\b
Run folder (--out, default runs/<workflow name>): workflow.json (resolved workflow, step status),
data/*.zarr, model.safetensors, train/ (log.jsonl, loss.png, checkpoint.npz), segmentation.ome.zarr,
report.json, overlays/*.png, summary.json and summary.md.
\b
Examples:
  mpfpipe run workflows/quickstart.yaml
  mpfpipe run workflows/quickstart.yaml --set n_images=4 --set size=64x64 --set iterations=2 --out runs/tiny
  mpfpipe run workflows/isbi2012-membranes.yaml --set data=/data/isbi2012 --scheduler tcp://head:8786
  mpfpipe run workflows/quickstart.yaml --dry-run          # show the resolved steps and parameters
""")
@click.argument("workflow", type=click.Path(dir_okay=False))
@cli_options("run", set={"type": _KeyValue()})
@config_option
def run_cmd(workflow, out, scheduler, workers, threads, resume, overwrite, dry_run,
            progress, **kw):
    """Run the workflow WORKFLOW.yaml (ingest -> train -> segment -> evaluate) into a run folder.

    Parameters declared in the workflow's params: section can be overridden with --set KEY=VALUE.
    An existing run folder is refused unless --resume or --overwrite is given."""
    from ..workflow import run_workflow, summary_markdown

    sets = kw["set"]
    if resume and overwrite:
        raise click.UsageError("give either --resume or --overwrite, not both")
    try:
        summary = run_workflow(workflow, list(sets), out=out, scheduler=scheduler,
                               workers=workers, threads=threads, overwrite=overwrite, resume=resume,
                               progress=progress, echo=lambda msg: click.echo(msg, err=True), dry_run=dry_run)
    except KeyboardInterrupt:
        from ..errors import Interrupted
        raise Interrupted("finished steps, the training checkpoint and finished segmentation blocks are kept; "
                          "continue with the same command and --resume (instead of --overwrite)") from None
    if dry_run or kw["json"]:
        click.echo(_json.dumps(summary, indent=2, default=str))
    else:
        click.echo(summary_markdown(summary))
