"""Evaluation of a segmentation against ground truth: metrics, a JSON report and overlay PNGs.

    from mpfpipe.evaluate import evaluate
    report = evaluate("seg.ome.zarr", "train-labels.tif", truth_positive=0, output="eval/")

Reported (see `metrics` for the exact definitions): pixel error and per-class IoU / Dice of the predicted classes
(2-class: positive when p > ``threshold``; more classes: arg-max); the ISBI 2012 foreground-restricted Rand score
V_rand swept over thresholds with the best threshold and ``rand_error`` = 1 - V_rand; the challenge's ranking
scores after border thinning exactly as its leaderboard computes them, ``isbi2012`` (``v_rand_thinned``,
``v_info_thinned``) and ``voi`` (``split``, ``merge``; see `official`: its own thresholds 0.0, 0.1, ... 1.0); with
``instances``, the instance scores (`instances`); the challenge's own "pixel error" (1 - the maximal F-score of
the non-positive class over the same thresholds; 2 classes); the paper's balanced per-pixel error (5,000
positive and 5,000 negative pixels, seeded); image-level detection (an image is flagged when its predicted
positive-pixel count exceeds a threshold chosen on the validation split; confusion matrix and error on the test
split). With ``output``, writes ``report.json`` and ``overlay_zNNNN.png`` there.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import __version__, _safety
from ..errors import DataError, ValueFormatError
from ..options import check as check_options
from ..values import parse_indices
from . import metrics, official
from .inputs import (Prediction, Truth, _segment_meta, check_computable, load_image, load_prediction, load_truth,
                     overlay_image)
from .instances import choose_parameters, is_class_truth, load_pred_instances, score_instances
from .report import overlay_png, pick_slices, write_json

__all__ = ["Prediction", "Truth", "evaluate", "metrics", "official", "select_images"]


def _pair(pred: Prediction, truth: Truth) -> None:
    if len(pred.probs) != len(truth.labels):
        raise DataError(f"the prediction has {len(pred.probs)} slice(s)/image(s), the truth {len(truth.labels)}")
    for i, t in enumerate(truth.labels):
        shape = pred.probs[i].shape[-2:]
        if tuple(shape) != tuple(t.shape):
            raise DataError(f"slice {i}: prediction is {shape[0]}x{shape[1]}, truth {t.shape[0]}x{t.shape[1]}")


def _predicted_classes(p: np.ndarray, n_classes: int, positive: int, threshold: float) -> np.ndarray:
    if p.ndim == 3 and n_classes > 2:
        return np.argmax(p, axis=0).astype(np.uint8)
    pos = p[positive] if p.ndim == 3 else p
    other = 0 if positive != 0 else 1
    return np.where(pos > threshold, positive, other).astype(np.uint8)


def _parse_indices(spec) -> list[int]:
    return [] if spec is None else parse_indices(spec)


def select_images(images, dataset, n: int) -> list[int]:
    """Image indices named by ``images``: None / "all", split names of ``dataset`` ("test", "val,test" or a
    list), or indices ("0-9,12" or a list of ints)."""
    if images is None or (isinstance(images, str) and images.strip() == "all"):
        return list(range(n))
    items = [p.strip() for p in images.split(",")] if isinstance(images, str) else list(images)
    if all(isinstance(x, (int, np.integer)) or (isinstance(x, str) and x[:1].isdigit())
           for x in items):
        idx = sorted(set(_parse_indices(",".join(str(x) for x in items))))
        if not idx or any(not 0 <= i < n for i in idx):
            raise ValueFormatError(f"images {images!r}: indices must be within 0..{n - 1}")
        return idx
    if dataset is None:
        raise DataError(f"images {images!r}: split names need a truth dataset with splits (or give indices "
                        f"such as 0-9,12)")
    return sorted({i for name in items for i in dataset.split(name)})  # its errors name unknown / empty splits


def detection(counts, defective, splits: dict | None) -> dict:
    """Choose the count threshold on the val split and report on test (or on all images without splits)."""
    counts, defective = np.asarray(counts), np.asarray(defective, bool)
    val = _parse_indices((splits or {}).get("val"))
    test = _parse_indices((splits or {}).get("test"))
    for name, idx in (("val", val), ("test", test)):
        if any(not 0 <= i < counts.size for i in idx):
            raise DataError(f"{name} split indices must be within 0..{counts.size - 1}")
    if val:
        chosen = metrics.choose_count_threshold(counts[val], defective[val])
        on, chosen_on = (test, "test") if test else (val, "val (no test split)")
        out = {"threshold": chosen["threshold"], "chosen_on": "val", "val_error": chosen["error"],
               "evaluated_on": chosen_on, **metrics.detection_confusion(counts[on], defective[on],
                                                                          chosen["threshold"])}
    else:
        chosen = metrics.choose_count_threshold(counts, defective)
        out = {"threshold": chosen["threshold"], "chosen_on": "all images (no val split: optimistic)",
               "evaluated_on": "all images", **metrics.detection_confusion(counts, defective, chosen["threshold"])}
    out["rule"] = "image flagged defective when its predicted positive-pixel count > threshold"
    return out


def detection_images(det: dict, splits: dict | None, n: int) -> list[int]:
    """The images `detection` reported its error on."""
    on = det.get("evaluated_on", "")
    key = "test" if on == "test" else "val" if on.startswith("val") else None
    return _parse_indices((splits or {}).get(key)) if key else list(range(n))


def evaluate(pred, truth, *, output=None, image=None, truth_positive=None, positive: int = 1,
             threshold: float = 0.5, thresholds=metrics.DEFAULT_THRESHOLDS, samples: int = 5000, seed: int = 0,
             splits: dict | None = None, ignore_index: int = 255, overlays: int = 4, rand: bool = True,
             overwrite: bool = False, groups=None, images=None, instances: bool = False,
             tune_instances: bool = False) -> dict:
    """Evaluate ``pred`` against ``truth`` (paths or arrays; see `inputs`) and return the report dict.

    positive: the class id of membranes / defects; truth_positive: the truth stack's value of that class
    (e.g. 0 for ISBI labels); threshold: probability above which a pixel is predicted positive; thresholds: the
    V_rand sweep; samples / seed: the balanced error's draw; splits: {"val": [...], "test": [...]} image indices
    for detection (default: the truth dataset's splits); groups: a source group name per image (default: the
    truth dataset's folders) for a per-group table; images: the images the pixel metrics, Rand score, groups and
    overlays are computed on (None / "all", split names of a truth dataset such as "test" or "val,test", or
    indices such as "0-9,12"); detection keeps its own splits (threshold on val, error on test) whatever the
    subset; output: folder for report.json and overlays (``overlay_zNNNN.png``, NNNN the image's index);
    instances: also score the instance segmentation (``report["instances"]``, see `instances`); ``pred`` may then
    be an instance label stack alone, and the report holds only that section; tune_instances: choose the instance
    parameters on the truth's val split, among them the learned merge score fitted on its train split
    (``report["instances_chosen"]``, `instances.choose_parameters`) and write
    them into the model the segmentation was made with (`model.set_instances`; its path in the report's
    ``model``), which ``segment --instances`` then reads."""
    check_options("evaluate", locals())
    if output is not None:
        out_dir = Path(output)
        replace = _safety.check_outputs([("output folder", out_dir, ("evaluation",))], overwrite=overwrite,
                                        inputs=[x for x in (pred, truth, image) if isinstance(x, (str, Path))])
    if instances and not (_has_probabilities(pred) and is_class_truth(truth, truth_positive)):
        return _instances_only(pred, truth, output=output, truth_positive=truth_positive, positive=positive,
                               ignore_index=ignore_index, images=images)
    P = load_prediction(pred)
    K = P.n_classes or 2
    if not 0 <= positive < K:
        raise DataError(f"positive class {positive} is not one of the {K} classes")
    T = load_truth(truth, truth_positive=truth_positive, n_classes=K, positive=positive)
    _pair(P, T)
    image, image_source = load_image(image), image
    check_computable(T, truth, ignore_index, image, image_source)
    n = len(T.labels)
    idx = select_images(images, T.dataset, n)
    chosen = set(idx)
    conf = np.zeros((K, K), np.int64)
    counts, defective, probs_pos, confs = [], [], {}, {}
    for i, t in enumerate(T.labels):  # counts of every image: detection's val / test may lie outside the subset
        cls = _predicted_classes(P.probs[i], K, positive, threshold)
        counts.append(int((cls == positive).sum()))
        defective.append(bool((t == positive).any()))
        if i in chosen:
            confs[i] = metrics.confusion_matrix(cls, t, K, ignore_index)
            conf += confs[i]
            probs_pos[i] = P.positive(i, positive)
    iou, dice = metrics.iou_dice(conf)
    flat_p = np.concatenate([probs_pos[i].ravel() for i in idx])
    flat_t = np.concatenate([T.labels[i].ravel() for i in idx])
    names = (P.source or {}).get("class_names") or [f"class{k}" for k in range(K)]
    report = {
        "mpfpipe_version": __version__,
        "prediction": str(pred) if not isinstance(pred, (np.ndarray, Prediction)) else "array",
        "truth": str(truth) if not isinstance(truth, (np.ndarray, Truth)) else "array",
        "n_images": len(idx), "images": {"selection": "all" if images is None else images, "indices": idx},
        "n_pixels": int(conf.sum()), "classes": list(names), "positive_class": positive,
        "threshold": threshold,
        "pixel_error": metrics.pixel_error(conf),
        "confusion": conf.tolist(), "confusion_axes": "rows truth class, cols predicted class",
        "iou": dict(zip(names, iou)), "dice": dict(zip(names, dice)),
        "mean_iou": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
        "balanced_error": metrics.balanced_error(flat_p, flat_t, positive=positive, ignore_index=ignore_index,
                                                 threshold=threshold, n_per_class=samples, seed=seed),
    }
    if K == 2:
        report["isbi_pixel_error"] = metrics.fscore_sweep(flat_p, flat_t, positive=positive,
                                                          ignore_index=ignore_index, thresholds=thresholds)
    if rand:
        report["rand"] = metrics.vrand_sweep([probs_pos[i] for i in idx], [T.labels[i] for i in idx],
                                             positive=positive, ignore_index=ignore_index, thresholds=thresholds)
        report["isbi2012"], report["voi"] = official.thinned_sweep(
            [probs_pos[i] for i in idx], [T.labels[i] for i in idx], positive=positive, ignore_index=ignore_index)
    det_splits = splits if splits is not None else T.splits
    det_on = list(range(n))  # the images detection indexes: all, so that val / test are truth indices
    if not any(_parse_indices((det_splits or {}).get(k)) for k in ("val", "test")):
        det_on, det_splits = idx, None  # no splits: the threshold is chosen and judged on the subset itself
    report["detection"] = {**detection([counts[i] for i in det_on], [defective[i] for i in det_on], det_splits),
                           "counts": counts, "defective": defective}
    if groups is None and T.dataset is not None:
        groups = T.dataset.attrs.get("groups")
    if groups is not None:
        if len(groups) != n:
            raise DataError(f"{len(groups)} group name(s) for {n} image(s)")
        report["groups"] = metrics.group_pixel_errors([groups[i] for i in idx], [confs[i] for i in idx],
                                                      positive)
        det = report["detection"]
        det["groups"] = metrics.group_detection(
            [groups[i] for i in det_on], [counts[i] for i in det_on], [defective[i] for i in det_on],
            det["threshold"], detection_images(det, det_splits, len(det_on)))
    if instances:
        report["instances"] = score_instances(load_pred_instances(pred), truth, truth_positive=truth_positive,
                                              positive=positive, ignore_index=ignore_index, indices=idx)
    if tune_instances:
        val = _parse_indices((T.splits or {}).get("val"))
        if not val:
            raise DataError("tune_instances needs a truth dataset with a val split to choose the parameters on")
        def segs(idx):
            return [official.truth_segments(T.labels[i], positive=positive, ignore_index=ignore_index) for i in idx]
        train = _parse_indices((T.splits or {}).get("train"))
        chosen = {**choose_parameters([P.positive(i, positive) for i in val], segs(val),
                                      train=([P.positive(i, positive) for i in train], segs(train)) if train else None),
                  "chosen_on": "val", "images": val}
        chosen.update(_write_instances(P.source, chosen, truth))
        report["instances_chosen"] = chosen
    if P.source:
        report["model"] = {k: P.source.get("model", {}).get(k) for k in ("path", "sha256")}
    if output is not None:
        if replace["output folder"]:
            _safety.remove(out_dir)  # ours (checked above): no overlay of an earlier run stays behind
        _safety.claim(out_dir, "evaluation")  # dying while drawing overlays leaves a folder --overwrite replaces
        files = []
        for i in (idx[j] for j in pick_slices(len(idx), overlays)):
            img = overlay_image(P, T, i, image)
            files.append(str(overlay_png(out_dir / f"overlay_z{i:04d}.png", img, probs_pos[i], T.labels[i],
                                         positive=positive, threshold=threshold, ignore_index=ignore_index,
                                         title=f"slice {i}")))
        report["overlays"] = files
        report["report"] = str(write_json(report, out_dir / "report.json"))
        _safety.release(out_dir)
    return report


def _write_instances(source: dict | None, chosen: dict, truth) -> dict:
    """Write the chosen instance parameters into the model that made the segmentation ``source`` (as the
    workflows write the detection rule), so that a later ``segment --instances`` with it uses them. Returns
    {"model": its path} or, when there is no such model file any more, {"model": None, "not_written": why}."""
    from ..model import same_model, set_instances
    record = (source or {}).get("model") or {}
    path = record.get("path")
    if not path:
        return {"model": None, "not_written": "the prediction records no model file"}
    if not Path(path).is_file():
        return {"model": None, "not_written": f"the model {path} that made the segmentation is gone"}
    if not same_model(record, path):
        return {"model": None, "not_written": f"{path} is no longer the model that made the segmentation"}
    set_instances(path, {**chosen["parameters"], "chosen_on": "val", "images": chosen["images"],
                         "v_rand_thinned": chosen["v_rand_thinned"], "v_info_thinned": chosen["v_info_thinned"],
                         "dataset": str(truth) if not isinstance(truth, (np.ndarray, Truth)) else "array"})
    return {"model": str(path)}


def _has_probabilities(pred) -> bool:
    return isinstance(pred, Prediction) or (not isinstance(pred, np.ndarray) and _segment_meta(pred) is not None)


def _instances_only(pred, truth, *, output, truth_positive, positive, ignore_index, images) -> dict:
    """The report of an instance label stack given as the prediction: its instance scores only."""
    slices = load_pred_instances(pred)
    ds = None
    if images is not None and is_class_truth(truth, truth_positive):  # split names need the truth dataset
        ds = load_truth(truth, truth_positive=truth_positive, positive=positive).dataset
    idx = select_images(images, ds, len(slices))
    report = {"mpfpipe_version": __version__,
              "prediction": str(pred) if not isinstance(pred, np.ndarray) else "array",
              "truth": str(truth) if not isinstance(truth, np.ndarray) else "array",
              "n_images": len(idx), "images": {"selection": "all" if images is None else images, "indices": idx},
              "instances": score_instances(slices, truth, truth_positive=truth_positive, positive=positive,
                                           ignore_index=ignore_index, indices=idx)}
    if output is not None:
        report["report"] = str(write_json(report, Path(output) / "report.json"))
    return report
