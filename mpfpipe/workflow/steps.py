"""The step runners: each calls one Python API (ingest, train, segment, evaluate) with its resolved options."""
from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import DataError, TrainingError
from ._io import _write_json
from .spec import Step, WorkflowError


def _run_ingest(step: Step, ctx) -> dict:
    from ..data import ingest, open_dataset, synth_defects, synth_em
    o = dict(step.options)
    src = o.pop("source")
    out = step.outputs["main"]
    out.parent.mkdir(parents=True, exist_ok=True)
    common = dict(overwrite=True, progress=ctx.progress)
    if src[0] == "synthetic:em":
        synth_em(out, **o, **common)
    elif src[0] == "synthetic:defects":
        synth_defects(out, **o, **common)
    else:
        ingest(src, out, **o, **common)
    ds = open_dataset(out)
    return {"dataset": str(out), "images": ds.n_images, "classes": ds.class_names, "splits": ds.split_sizes()}


def _augment(value, where):
    from ..data import parse_augment
    try:
        return parse_augment(value)
    except DataError as exc:
        raise WorkflowError(f"{where}: augment: {exc}") from None


def _run_train(step: Step, ctx) -> dict:
    from ..train import train
    o = dict(step.options)
    o.pop("dataset", None)
    o["augment"] = _augment(o.get("augment"), step.label)
    ck = step.outputs["checkpoint"]
    ck.parent.mkdir(parents=True, exist_ok=True)
    resume = ck.exists()
    if resume:
        ctx.say(f"  resuming the training run of {ck}")
    res = train(step.inputs["dataset"], out=step.outputs["main"], checkpoint=ck, log=step.outputs["log"],
                plot=step.outputs["plot"], resume=resume, overwrite=True, client=ctx.client,  # the run's own model
                progress=ctx.progress, echo=ctx.say, **o)
    if res.status == "paused":
        raise TrainingError(f"{step.label}: training paused (max_steps); rerun with --resume to continue")
    ctx.say(res.text)
    keep = ("status", "steps", "net", "n_params", "optimizer", "initial_loss", "final_loss", "best_val_loss",
            "best_val_error", "best_val_balanced_error", "best_epoch", "timing", "cluster", "evaluations",
            "n_train")
    return {k: res.summary.get(k) for k in keep} | {"model": str(step.outputs["main"]),
                                                    "loss_plot": str(step.outputs["plot"])}


def _run_segment(step: Step, ctx) -> dict:
    from ..segment import segment
    from ..values import parse_block
    o = dict(step.options)
    o.pop("model", None)
    o.pop("input", None)
    n_overlays = int(o.pop("overlays", 0) or 0)
    instances = o.pop("instances", None)
    if o.get("block") is not None:  # checked when the workflow was planned (mpfpipe.options)
        o["block"] = parse_block(o["block"])
    from ..errors import OutputExistsError

    def go(overwrite):
        return segment(step.inputs["model"], step.inputs["input"], step.outputs["main"], scheduler=ctx.scheduler,
                       workers=ctx.workers if ctx.scheduler is None else None, progress=ctx.progress,
                       overwrite=overwrite, **o)
    try:  # an unfinished output of the same model and settings resumes (done blocks are skipped)
        res = go(False)
    except OutputExistsError:  # complete, or made with another model / settings: recompute
        res = go(True)
    ctx.say(res.summary())
    if not hasattr(res, "blocks"):  # a folder of images: masks + detections.csv (`segment.folder`)
        return {"output": str(step.outputs["main"]), **{k: v for k, v in res.to_dict().items() if k != "errors"}}
    out = {"output": str(step.outputs["main"]), "blocks": res.blocks, "done": res.done, "skipped": res.skipped,
           "seconds": res.seconds, "voxels_per_s": res.voxels_per_s}
    if n_overlays > 0:
        out["overlays"] = _segment_overlays(step.outputs["main"], step.outputs["overlays"], n_overlays)
    if instances:
        out["instances"] = _segment_instances(step, ctx, _instance_params(step, instances))
    return out


def _instance_params(step: Step, value) -> dict:
    """A segment step's ``instances``: true, or a mapping of `label_instances` options (also as YAML text)."""
    import yaml

    from ..segment.instances import PARAMS
    if isinstance(value, str):
        value = yaml.safe_load(value)
    if value is True:
        return {}
    if not isinstance(value, dict) or not set(value) <= set(PARAMS):
        raise WorkflowError(f"{step.label}: instances must be true or a mapping of {', '.join(PARAMS)}; got {value!r}")
    return dict(value)


def _segment_instances(step: Step, ctx, params: dict) -> dict:
    """labels/instances of the step's segmentation (`segment.instances`), recomputed like the segmentation."""
    from ..errors import OutputExistsError
    from ..segment.instances import label_instances

    def go(overwrite):
        return label_instances(step.outputs["main"], scheduler=ctx.scheduler, overwrite=overwrite,
                               workers=ctx.workers if ctx.scheduler is None else None, progress=ctx.progress,
                               **params)
    try:
        res = go(False)
    except OutputExistsError:
        res = go(True)
    ctx.say(res.summary())
    return {"n_objects": res.n_objects, "seconds": res.seconds, "blocks": res.blocks}


def _segment_overlays(seg, folder, n: int) -> list[str]:
    """PNGs of n evenly spaced slices of a segmentation (image, probability, prediction > 0.5), no truth: for
    looking at an unlabelled volume. The folder is redrawn from scratch."""
    from ..evaluate.inputs import Truth, load_prediction, overlay_image
    from ..evaluate.report import overlay_png, pick_slices
    P = load_prediction(str(seg))
    positive = 1 if (P.n_classes or 2) == 2 else None
    if folder.exists():
        shutil.rmtree(folder)
    files = []
    for i in pick_slices(len(P.probs), n):
        img = overlay_image(P, Truth([], None, None), i)
        if positive is None:  # more than 2 classes: draw the arg-max's non-background share
            prob = 1.0 - P.probs[i][0]
        else:
            prob = P.positive(i, positive)
        files.append(str(overlay_png(folder / f"z{i:04d}.png", img, prob, None, positive=positive or 1,
                                     threshold=0.5, title=f"{Path(seg).name}, slice {i}")))
    return files


def _run_evaluate(step: Step, ctx) -> dict:
    from ..evaluate import evaluate

    o = dict(step.options)
    for k in ("pred", "truth", "image"):
        o.pop(k, None)
    images = o.pop("images", "all")
    o["instances"] = bool(o.get("instances"))  # true, or the segment step's instance options
    want_detection = o.pop("detection", True)
    report_path, overlay_dir = step.outputs["main"], step.outputs["overlays"]
    if overlay_dir.exists():
        shutil.rmtree(overlay_dir)
    image = str(step.inputs["image"]) if "image" in step.inputs else None
    try:
        rep = evaluate(str(step.inputs["pred"]), str(step.inputs["truth"]), output=overlay_dir, image=image,
                       overwrite=True, images=images, **o)
    except DataError as e:
        raise DataError(f"{step.label}: {e}") from None
    (overlay_dir / "report.json").unlink(missing_ok=True)
    relabelled = _instances_as_chosen(step, ctx, rep, o) if "instances_chosen" in rep and "instances" in rep \
        else None
    files = rep.get("overlays", [])
    if not want_detection:
        rep.pop("detection", None)
    rep.pop("report", None)
    _write_json(report_path, rep)
    out = {"report": str(report_path), "overlays": files, "n_images": rep.get("n_images"),
           "pixel_error": rep.get("pixel_error"), "mean_iou": rep.get("mean_iou"),
           "balanced_error": rep.get("balanced_error")}
    if "isbi_pixel_error" in rep:
        out["isbi_pixel_error"] = {k: v for k, v in rep["isbi_pixel_error"].items() if k != "curve"}
    if "rand" in rep:
        r = rep["rand"]
        out["rand"] = {k: r.get(k) for k in r if k != "curve"}
    if "isbi2012" in rep:
        out["isbi2012"] = {k: v for k, v in rep["isbi2012"].items() if k != "curve"}
        out["voi"] = {k: rep["voi"].get(k) for k in ("split", "merge", "threshold", "unit")}
    if "detection" in rep:
        d = rep["detection"]
        out["detection"] = {k: d.get(k) for k in ("threshold", "chosen_on", "evaluated_on", "error", "confusion",
                                                  "n_images", "groups") if k in d}
        if d.get("chosen_on") == "val" and "model" in step.inputs:
            out["detection"]["model"] = _write_detection(step, rep, d)
    if "groups" in rep:
        out["groups"] = rep["groups"]
    if "instances" in rep:
        out["instances"] = {k: v for k, v in rep["instances"].items() if k != "definitions"}
    if "instances_chosen" in rep:
        out["instances_chosen"] = {k: v for k, v in rep["instances_chosen"].items() if k != "grid"}
    if relabelled is not None:
        out["instances_relabelled"] = relabelled
    return out


def _instances_as_chosen(step: Step, ctx, rep: dict, o: dict) -> dict | None:
    """evaluate scored the labels/instances the segment step made with the model's parameters of then, and then
    chose (maybe other) parameters on val and wrote them into the model: the instance step runs again with them
    (`label_instances`, its parameters from the model) and ``rep["instances"]`` is replaced by their scores, so
    that the report's instances are those of the chosen parameters. None when they were made with them already;
    else what the instance step did (objects, seconds)."""
    from ..evaluate.instances import load_pred_instances, score_instances
    from ..segment import instance_store
    from ..segment.instances import label_instances
    pred = str(step.inputs["pred"])
    made = (instance_store.labels_state(pred) or {}).get("settings") or {}
    chosen = rep["instances_chosen"]["parameters"]
    if all(made.get(k) == v for k, v in chosen.items()):
        return None
    res = label_instances(pred, scheduler=ctx.scheduler, workers=ctx.workers if ctx.scheduler is None else None,
                          progress=ctx.progress, overwrite=True)
    ctx.say(res.summary())
    rep["instances"] = score_instances(load_pred_instances(pred), str(step.inputs["truth"]),
                                       truth_positive=o.get("truth_positive"), positive=rep.get("positive_class", 1),
                                       ignore_index=o.get("ignore_index", 255), indices=rep["images"]["indices"])
    return {"n_objects": res.n_objects, "seconds": res.seconds, "blocks": res.blocks}


def _write_detection(step: Step, rep: dict, d: dict) -> str:
    """Write the detection rule chosen on the validation split into the model this workflow trained, so that
    `mpfpipe segment MODEL FOLDER OUT` flags images without being told the threshold. The counts were taken on
    the segmented dataset, which has the model's down-sampling: the threshold is in pixels at the model's
    resolution."""
    from ..model import set_detection
    model = step.inputs["model"]
    set_detection(model, {"threshold": float(d["threshold"]), "positive": int(rep.get("positive_class", 1)),
                          "probability": float(rep.get("threshold", 0.5)), "chosen_on": "val",
                          "val_error": d.get("val_error"), "test_error": d.get("error"),
                          "dataset": str(step.inputs["truth"]), "rule": "flag an image when its predicted "
                          "positive-pixel count at the model's resolution exceeds threshold"})
    return str(model)


RUNNERS = {"ingest": _run_ingest, "train": _run_train, "segment": _run_segment, "evaluate": _run_evaluate}
