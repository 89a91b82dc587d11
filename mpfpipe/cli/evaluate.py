"""``mpfpipe evaluate PRED TRUTH``: metrics, JSON report and overlays (see `mpfpipe.evaluate`)."""
from __future__ import annotations

import json

import click

from . import cli
from ..options import cli_options
from ._common import config_option


@cli.command()
@config_option
@click.argument("pred")
@click.argument("truth")
@cli_options("evaluate command")
def evaluate(pred, truth, output, image, truth_positive, positive, threshold, samples, seed, val, test, images,
             overlays, no_rand, instances, tune_instances, overwrite):
    """Compare PRED (a `mpfpipe segment` output or a probability map) with TRUTH (a dataset or a label stack):
    pixel error, foreground-restricted Rand error with the best threshold, IoU / Dice, balanced error and
    defect detection. Prints the report as JSON."""
    from ..evaluate import evaluate as run
    from ..evaluate.report import json_safe

    splits = None
    if val is not None or test is not None:
        splits = {"val": val, "test": test}
    report = run(pred, truth, output=output, image=image, truth_positive=truth_positive, positive=positive,
                 threshold=threshold, samples=samples, seed=seed, splits=splits, images=images, overlays=overlays,
                 rand=not no_rand, overwrite=overwrite, instances=instances, tune_instances=tune_instances)
    brief = {k: v for k, v in report.items() if k not in ("confusion_axes",)}
    if "rand" in brief:
        brief["rand"] = {k: v for k, v in brief["rand"].items() if k != "curve"}
    if "detection" in brief:
        brief["detection"] = {k: v for k, v in brief["detection"].items() if k not in ("counts", "defective")}
    click.echo(json.dumps(json_safe(brief), indent=2))
