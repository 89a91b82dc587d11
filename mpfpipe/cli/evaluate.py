"""``mpfpipe evaluate PRED TRUTH``: metrics, JSON report and overlays (see `mpfpipe.evaluate`)."""
from __future__ import annotations

import json

import click

from . import cli
from ..options import click_type
from ._common import config_option


@cli.command()
@config_option
@click.argument("pred")
@click.argument("truth")
@click.option("--output", "-o", default=None, help="Folder for report.json and overlay PNGs.")
@click.option("--image", default=None, help="Raw volume for the overlays (default: the segmented input).")
@click.option("--truth-positive", type=int, default=None,
              help="Value of the positive class in a TRUTH label stack (ISBI 2012: 0 = membrane).")
@click.option("--positive", type=click_type("evaluate", "positive"), default=1,
              help="Class id of the positive (membrane / defect) class.")
@click.option("--threshold", type=click_type("evaluate", "threshold"), default=0.5,
              help="p(positive) above which a pixel is positive.")
@click.option("--samples", type=click_type("evaluate", "samples"), default=5000,
              help="Pixels per class for the balanced error.")
@click.option("--seed", type=int, default=0, help="Seed of the balanced error's draw.")
@click.option("--val", default=None, help="Validation image indices for detection, e.g. 0-9,12 (default: the "
                                          "truth dataset's split).")
@click.option("--test", default=None, help="Test image indices for detection.")
@click.option("--images", default=None, help="Evaluate only these images: split names of a TRUTH dataset (test, "
                                             "val,test) or indices (0-9,12); detection keeps its val / test splits.")
@click.option("--overlays", type=click_type("evaluate", "overlays"), default=4, help="Number of overlay slices.")
@click.option("--no-rand", is_flag=True,
              help="Skip the threshold sweeps (V_rand; the thinned V_rand, V_info and VOI).")
@click.option("--instances", is_flag=True,
              help="Score the instance segmentation (PRED's labels/instances, or an instance label stack): adapted "
                   "Rand error, VOI split / merge, CREMI score and the ISBI thinned scores, in report['instances']. "
                   "TRUTH: an instance label stack (TIFF / Zarr / FILE.h5:DATASET) or a class-label dataset.")
@click.option("--tune-instances", is_flag=True,
              help="Choose the instance parameters (merge threshold, seed distance) on the TRUTH dataset's val "
                   "split by the official thinned V_rand, in report['instances_chosen'].")
@click.option("--overwrite", is_flag=True, help="Replace an existing report.")
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
