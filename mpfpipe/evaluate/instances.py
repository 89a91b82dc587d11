"""Scoring an instance segmentation (ids per object) against a truth, for ``evaluate --instances``.

Prediction: a ``mpfpipe segment --instances`` output (its ``labels/instances`` level 0, cropped to each image's
valid size), or an instance label stack / array (TIFF, ``.npy``, Zarr array, ``FILE.h5:DATASET``).

Truth:
- an **instance label stack** (same formats; 0 = background, not counted): scored in 3-D over the whole volume
  (ids are objects across sections, as in SNEMI3D and CREMI);
- a **class-label truth** (an mpfpipe dataset, or a stack with ``truth_positive``, e.g. ISBI 2012): its objects
  are the 4-connected components of non-membrane in each section, as the ISBI evaluation defines them; scored
  section by section and averaged (the sections' objects are not linked in 3-D).

``report["instances"]``: ``arand``, ``voi_split``, ``voi_merge``, ``cremi`` (see `instance_metrics`) and the ISBI
thinned scores of the instance image, ``v_rand_thinned`` and ``v_info_thinned`` (see `official.instance_scores`),
and ``sections``: each scored section's own ISBI thinned scores (the report's two are their means) with their
rand_split / rand_merge, and against a class-label truth also its ARAND and VOI split / merge.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import DataError
from . import instance_metrics, official

INSTANCES_NAME = "instances"
SECTION_KEYS = ("arand", "voi_split", "voi_merge")  # `instance_metrics.scores` kept per section in "sections"


def _read_ids(source, what: str) -> np.ndarray:
    """An integer id stack (Z, Y, X) from an array, TIFF, .npy, Zarr array or HDF5 ``FILE.h5:DATASET``."""
    if isinstance(source, np.ndarray):
        arr = source
    else:
        from ..data import hdf5
        if hdf5.parse_spec(source) is not None:
            path, name = hdf5.resolve(source)
            with hdf5.open_file(path) as f:
                arr = np.asarray(f[name][...])
        else:
            from .inputs import _read_any
            arr = _read_any(str(source))
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise DataError(f"{what} must be (Z, Y, X) or (Y, X) ids, got shape {arr.shape}")
    if arr.dtype.kind not in "ui":
        raise DataError(f"{what} holds {arr.dtype} values: instance ids must be integers")
    if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
        raise DataError(f"{what} holds negative ids: instance ids must be >= 0")
    if arr.dtype.itemsize <= 2 and arr.size:
        # every value of a small dtype in use: the ids were almost certainly wrapped round when saved
        full = 1 << (8 * arr.dtype.itemsize)
        if np.unique(arr).size >= full:
            raise DataError(f"{what} uses all {full} values of {arr.dtype}: it has too many ids for its dtype "
                            f"(they have wrapped round); save it as uint32 or uint64")
    return arr


def segment_instances(path) -> tuple[list, dict] | None:
    """(per-slice id arrays, the output's mpfpipe attrs) of a segment output, None if ``path`` is not one."""
    from .inputs import _segment_meta
    if isinstance(path, np.ndarray):
        return None
    meta = _segment_meta(path)
    if meta is None:
        return None
    import zarr
    root = zarr.open_group(str(path), mode="r")
    labels = root["labels"] if "labels" in root else None
    if labels is None or INSTANCES_NAME not in labels:
        raise DataError(f"{path} has no labels/{INSTANCES_NAME}: segment it with --instances first")
    inst = labels[INSTANCES_NAME]
    imeta = dict(inst.attrs).get("mpfpipe") or {}
    if not imeta.get("complete"):
        raise DataError(f"{path}: labels/{INSTANCES_NAME} is unfinished; rerun `mpfpipe segment --instances`")
    from .inputs import damaged_instances
    bad = damaged_instances(path)
    if bad:
        raise DataError(f"{path}: {len(bad)} damaged block(s) of labels/{INSTANCES_NAME} (rerun the same "
                        f"`mpfpipe segment --instances` to redo them); first: {bad[0]}")
    arr = np.asarray(inst["0"][...])
    if arr.ndim == 2:
        arr = arr[None]
    sizes = meta.get("input", {}).get("sizes")
    slices = [arr[z, :h, :w] for z, (h, w) in enumerate(sizes)] if sizes else list(arr)
    return slices, imeta


def load_pred_instances(pred) -> list:
    got = segment_instances(pred)
    if got is not None:
        return got[0]
    return list(_read_ids(pred, f"prediction {pred if not isinstance(pred, np.ndarray) else 'array'}"))


def is_class_truth(truth, truth_positive) -> bool:
    """True for a class-label truth (a dataset, or a stack with ``truth_positive``), False for instance ids."""
    if truth_positive is not None:
        return True
    p = Path(str(truth)) if not isinstance(truth, np.ndarray) else None
    return p is not None and p.is_dir() and (p / "zarr.json").exists() and _is_dataset(p)


def _is_dataset(p: Path) -> bool:
    import zarr
    try:
        return "mpfpipe_dataset" in dict(zarr.open_group(str(p), mode="r").attrs)
    except Exception:  # noqa: BLE001 - a Zarr array, not a group
        return False


def score_instances(pred_slices: list, truth, *, truth_positive=None, positive: int = 1, ignore_index: int = 255,
                    indices=None, border: float | None = None) -> dict:
    """report["instances"] of per-slice predicted ids against ``truth`` (see the module doc); ``indices``: the
    slices to score (default all); ``border``: CREMI's border mask width in pixels (None: no mask)."""
    n = len(pred_slices)
    indices = list(range(n)) if indices is None else list(indices)
    if is_class_truth(truth, truth_positive):
        from .inputs import load_truth
        T = load_truth(truth, truth_positive=truth_positive, positive=positive)
        gts = [official.truth_segments(t, positive=positive, ignore_index=ignore_index) for t in T.labels]
        mode = "per section: truth objects = 4-connected non-membrane components of each section"
    else:
        gts = list(_read_ids(truth, f"truth {truth if not isinstance(truth, np.ndarray) else 'array'}"))
        mode = "3-D over the volume: truth objects = its ids (0 = background, not counted)"
    if len(gts) != n:
        raise DataError(f"the prediction has {n} slice(s), the truth {len(gts)}")
    for i in indices:
        if pred_slices[i].shape != gts[i].shape:
            raise DataError(f"slice {i}: prediction is {pred_slices[i].shape}, truth {gts[i].shape}")
    if border:
        gts = [np.where(instance_metrics.border_mask(g, border), 0, g) for g in gts]
    preds = [np.asarray(pred_slices[i]) for i in indices]
    truths = [np.asarray(gts[i]) for i in indices]
    per = None
    if mode.startswith("3-D"):
        s = instance_metrics.scores(np.concatenate([p.ravel() for p in preds]),
                                    np.concatenate([t.ravel() for t in truths]))
        segs = [ndimage.label(official.instance_proposal(t) > 0)[0] for t in truths]
    else:
        per = [instance_metrics.scores(p, t) for p, t in zip(preds, truths)]
        s = {k: float(np.nanmean([q[k] for q in per])) for k in per[0]}
        segs = truths
    isbi = official.instance_scores(preds, segs, sections=True)
    # each section's own scores (the ISBI ones; per-section truth: also ARAND and VOI), to find the ones that hold
    # the means down and whether by splits or merges
    sections = [{"index": int(i), **q, **{k: m[k] for k in SECTION_KEYS if k in m}}
                for i, q, m in zip(indices, isbi.pop("sections"), per or [{}] * len(indices))]
    out = {**s, **isbi, "sections": sections, "mode": mode, "n_slices": len(indices),
           "n_objects": int(np.count_nonzero(np.unique(np.concatenate([p.ravel() for p in preds])))),
           "definitions": "arand: SNEMI3D adapted Rand error (cremi_python rand.py); voi: H(pred|truth), "
                          "H(truth|pred) in bits (cremi_python voi.py); cremi = sqrt((split + merge) * arand); "
                          "v_*_thinned: official ISBI 2012 scores of the instance boundaries (binary proposal)"}
    if border:
        out["border_mask"] = float(border)
    return out


# the hierarchical quantile merging's (the defaults); on the ISBI membrane workflow's val sections the mean and the
# median scored below low quantiles, and smoothing the map did not help (mpfpipe.data.agglomerate)
TUNE_GRID = {"threshold": (0.4, 0.5), "merge_threshold": (0.1, 0.15, 0.2, 0.3), "merge_quantile": (5, 25),
             "seed_distance": (5, 12)}
# the learned score (a probability that two objects differ): its merge thresholds, for each threshold and seed
# distance of TUNE_GRID (the classifier is fitted on the training sections' regions of those)
LEARNED_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)


def _candidates(grid: dict, fixed: dict, train) -> tuple[list, dict]:
    """(the parameter sets to try: the grid's, then the learned score's; how the learned score fared)."""
    import itertools
    names = list(grid)
    out = [{**fixed, **dict(zip(names, values))} for values in itertools.product(*(grid[k] for k in names))]
    if train is None:
        return out, {"tried": False, "why": "no training sections to fit it on"}
    from ..data.merge_learn import fit_merge_classifier
    try:
        import sklearn  # noqa: F401 - only to fit
    except ImportError:
        return out, {"tried": False, "why": "scikit-learn is not installed (pip install 'mpfpipe[learn]')"}
    learned = []
    for thr in grid.get("threshold", (fixed["threshold"],)):
        for sd in grid.get("seed_distance", (fixed["seed_distance"],)):
            try:
                clf = fit_merge_classifier(*train, threshold=thr, seed_distance=sd, smooth=fixed["smooth"])
            except DataError as exc:  # e.g. training sections without a wrong or a right merge to learn from
                return out, {"tried": False, "why": str(exc)}
            learned += [{**fixed, "threshold": thr, "seed_distance": sd, "merge_score": "learned",
                         "merge_threshold": mt, "merge_classifier": clf} for mt in LEARNED_THRESHOLDS]
    return out + learned, {"tried": True, "fitted_on": f"{len(train[0])} training section(s)"}


def choose_parameters(prob_slices, truth_segs, *, grid=TUNE_GRID, base: dict | None = None, train=None) -> dict:
    """The instance parameters with the best official V_rand after thinning (ties: V_info, then the first tried)
    of whole-section instances of the given (validation) slices, as the detection threshold is chosen on the
    validation split. Tried: ``grid`` (others from ``base``, else the defaults), then, given ``train`` (membrane
    probabilities, truth objects of training sections), the learned merge score fitted on them
    (`data.merge_learn`, GALA) at `LEARNED_THRESHOLDS`."""
    from ..data.watershed import DEFAULTS, SECTION, section_instances
    fixed = {k: v for k, v in {**DEFAULTS, **(base or {})}.items() if k in SECTION}
    candidates, learned = _candidates(grid, fixed, train)
    best, tried = None, []
    for p in candidates:
        inst = [section_instances(s, **p) for s in prob_slices]
        sc = official.instance_scores(inst, truth_segs)
        tried.append({**{k: v for k, v in p.items() if k in (*grid, "merge_score")}, **sc})
        if best is None or (sc["v_rand_thinned"], sc["v_info_thinned"]) > (best[1]["v_rand_thinned"],
                                                                          best[1]["v_info_thinned"]):
            best = (p, sc)
    return {"parameters": best[0], "v_rand_thinned": best[1]["v_rand_thinned"],
            "v_info_thinned": best[1]["v_info_thinned"], "n_slices": len(prob_slices), "learned": learned,
            "grid": tried}
