"""Workflows: YAML files that chain ingest -> train -> segment -> evaluate into one run folder.

A workflow file::

    name: quickstart
    description: one line shown by `mpfpipe run --dry-run`
    params:                      # defaults; override with `mpfpipe run FILE --set n_images=4`
      n_images: 12
      size: 128x128
    steps:                       # run in order; each item is {KIND: {options}}
      - ingest:   {id: data, source: "synthetic:em", n_images: "${n_images}", size: "${size}", split: [0.75, 0.25]}
      - train:    {dataset: data, net: steel, optimizer: lbfgs, epochs: 40}
      - segment:  {input: test}
      - evaluate: {}

Parameters: ``${name}`` anywhere in a string is replaced by the parameter's value (a string that is exactly
``${name}`` takes the value with its type, so ``epochs: ${iterations}`` stays an integer). Built-ins: ``${run}``
(the run folder) and ``${workflow_dir}`` (the folder of the workflow file). ``--set key=value`` values are
read as YAML scalars (``4`` is an int, ``0.5`` a float, ``[0.5, 0.5]`` a list, anything else a string); an
unknown key is an error.

Steps call the Python APIs (`mpfpipe.data`, `mpfpipe.train.train`, `mpfpipe.segment.segment`,
`mpfpipe.evaluate.evaluate`) with the step's options; every option is checked against the API before anything
runs. Inputs (``train.dataset``, ``segment.model`` / ``input``, ``evaluate.pred`` / ``truth`` / ``image``) name an
earlier step's ``id`` (its output) or a path; they default to the latest ingest / train / segment step. Each
step's ``id`` defaults to its kind; give ids when a kind appears twice.

Run folder (``--out``, default ``runs/<name>``)::

    workflow.json            the resolved workflow (parameters, steps) and the status of every step
    data/<id>.zarr           ingested datasets
    model.safetensors        the trained model (a train step with another id: <id>.safetensors)
    train/                   log.jsonl (one line per step), loss.png (loss curves), checkpoint.npz
    segmentation.ome.zarr    the segment step's output (another id: <id>.ome.zarr)
    report.json, overlays/   the evaluate step's report and overlay PNGs (another id: <id>/...)
    summary.json, summary.md what ran, how long it took, the main numbers

An existing run folder is refused unless ``resume`` (finished steps are skipped, an interrupted training run
continues from its checkpoint, an unfinished segmentation from its done blocks) or ``overwrite`` (the folder is
cleared first) is given.
"""
from ._io import json_safe
from .runner import run_workflow, summary_markdown
from .spec import KINDS, Step, Workflow, WorkflowError, load_workflow, parse_sets, plan

__all__ = ["KINDS", "Step", "Workflow", "WorkflowError", "json_safe", "load_workflow", "parse_sets", "plan",
           "run_workflow", "summary_markdown"]
