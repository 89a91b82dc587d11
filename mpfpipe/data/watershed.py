"""Instances of one section from its membrane probability, and the pairs that join them across block faces and
sections (no I/O, no Dask: `mpfpipe.segment.instances` drives them blockwise, `mpfpipe.evaluate.instances` tunes
their parameters; they sit here, below both).

One section (or a tile of it with its context margin):

0. with ``smooth`` > 0, p is smoothed first (Gaussian of that sigma in pixels) and the smoothed map used below;
1. cell region = ``p < threshold``; seeds = the maxima of its Euclidean distance transform at least
   ``seed_distance`` pixels apart (scikit-image's ``peak_local_max``, as `peaks` computes it), one region per
   seed (plus one seed for a cell component without a maximum);
2. seeded watershed of ``p`` (at 4096 levels) from the seeds (`flood`, scikit-image's priority flood on a bucket
   queue), filling the whole section: every pixel belongs to the object whose seed floods it first, membranes
   are shared out between their two sides;
3. region merging by the boundary probability between two touching objects (over the 4-neighbour pixel pairs
   across it, each pair's mean): ``merge_score`` "mean", or "quantile": its ``merge_quantile``-th percentile
   (or "learned": ``merge_classifier``'s probability that the two are different objects, `merge_learn`)
   (`agglomerate`). ``agglomeration`` "hierarchical" (waterz): the cheapest boundary first while it scores below
   ``merge_threshold``, the merged object's boundaries re-scored from the union of their pixels; "one-shot": every
   boundary of the watershed's objects scored once and all those below ``merge_threshold`` joined (one
   union-find; a membrane between two cells scores high, a cut through one cell low);
4. objects smaller than ``min_size`` pixels are dropped and their pixels flooded again from their neighbours.

Ids are 1..n, numbered in raster order of each object's first pixel, so the same input gives the same ids.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..options import OPTIONS
from .agglomerate import agglomerate, boundary_stats, union  # noqa: F401 - union: for segment.instances
from .flood import flood, levels, raster_ids
from .peaks import peak_local_max

# The parameters of the instance step, and their defaults as mpfpipe.options declares them (OPTIONS["instances"])
SECTION = ("threshold", "seed_distance", "merge_threshold", "min_size", "agglomeration", "merge_score",
           "merge_quantile", "smooth", "merge_classifier")  # those of one section (`section_instances`)
PARAMS = (*SECTION, "link_slices", "link_overlap", "margin")
DEFAULTS = {name: OPTIONS["instances"][name].default for name in PARAMS}


def _relabel_raster(lab: np.ndarray) -> np.ndarray:
    """Ids 1..n in raster order of first appearance (0 stays 0)."""
    return raster_ids(lab)[0][lab]


def boundary_means(lab: np.ndarray, p: np.ndarray):
    """(a, b, mean boundary probability) of every pair of touching ids a < b (4-neighbours)."""
    a, b, sums, counts, _ = boundary_stats(lab, p)
    return a, b, sums / np.maximum(counts, 1)


def _squared_distance(cells: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance of each cell pixel to the nearest non-cell pixel: the seeds' depth map. Only its
    order matters (the maxima, deepest first), which squaring keeps. seung-lab's ``edt`` (Felzenszwalb &
    Huttenlocher's separable transform) gives scipy.ndimage.distance_transform_edt's values squared exactly (whole
    numbers in float32, exact to 2^24, i.e. distances of 4096 pixels) in about a third of its time, which had been a
    fifth of the instance step's block time. A section without a non-cell pixel has no finite distance there
    (``edt``: inf everywhere); scipy's transform, used for it, measures from a virtual point outside the image."""
    if cells.all():
        return ndimage.distance_transform_edt(cells) ** 2
    import edt
    return edt.edtsq(np.ascontiguousarray(cells), black_border=False, parallel=1)


def _seeds(cells: np.ndarray, seed_distance: int) -> np.ndarray:
    comp, n = ndimage.label(cells)
    dist = _squared_distance(cells)
    # one search over the whole section (scikit-image's per-component search loops over every component): a
    # component whose maximum lies within seed_distance of a deeper one elsewhere gets its deepest pixel below
    peaks = peak_local_max(dist, max(1, int(seed_distance)))
    peaks = peaks[cells[tuple(peaks.T)]] if len(peaks) else peaks
    markers = np.zeros(cells.shape, np.int64)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    missing = np.setdiff1d(np.arange(1, n + 1), comp[tuple(peaks.T)])
    if missing.size:  # a cell component without a maximum (a plateau peak_local_max left out): its deepest pixel
        # (scipy's maximum_position sorts the whole section, and breaks ties as its unstable sort falls: here
        # only their pixels are sorted, deepest first, ties by raster order)
        is_missing = np.zeros(n + 1, bool)  # a lookup: np.isin sorted the whole section
        is_missing[missing] = True
        idx = np.flatnonzero(is_missing[comp])
        order = idx[np.lexsort((-dist.ravel()[idx], comp.ravel()[idx]))]
        keys = comp.ravel()[order]
        first = order[np.r_[True, keys[1:] != keys[:-1]]]  # one per component, in the order of missing
        markers.ravel()[first] = np.arange(len(peaks) + 1, len(peaks) + 1 + first.size)
    return markers


def fragments(p: np.ndarray, *, threshold: float, seed_distance: int, smooth: float = DEFAULTS["smooth"]):
    """Steps 0-2 (the module doc) of one section: (the map used, its flooding levels, the watershed's object ids
    int64 1..k; None when no pixel is cell)."""
    p = np.asarray(p, dtype=np.float32)
    if smooth > 0:
        p = ndimage.gaussian_filter(p, float(smooth))
    cells = p < threshold
    if not cells.any():
        return p, None, None
    level = levels(p)
    return p, level, flood(level, _seeds(cells, seed_distance))


def section_instances(p: np.ndarray, *, threshold: float, seed_distance: int, merge_threshold: float,
                      min_size: int, agglomeration: str = DEFAULTS["agglomeration"],
                      merge_score: str = DEFAULTS["merge_score"], merge_quantile: int = DEFAULTS["merge_quantile"],
                      smooth: float = DEFAULTS["smooth"], merge_classifier: dict | None = None) -> np.ndarray:
    """Object ids (int64, 1..n, raster order; 0 only where no cell pixel exists at all) of one section.
    ``merge_classifier``: the fitted classifier (`merge_learn`) that merge_score "learned" needs."""
    p, level, lab = fragments(p, threshold=threshold, seed_distance=seed_distance, smooth=smooth)
    if lab is None:
        return np.zeros(p.shape, np.int64)
    clf = None
    if merge_score == "learned":
        from .agglomerate import classifier_array
        clf = classifier_array(merge_classifier)
    lab = agglomerate(lab, p, merge_threshold, merge_quantile if merge_score == "quantile" else None,
                      hierarchical=agglomeration == "hierarchical", classifier=clf)
    if min_size > 1:
        sizes = np.bincount(lab.ravel())
        small = sizes < min_size
        small[0] = False
        holes = small[lab]
        if holes.any() and not holes.all():  # flooded again from their neighbours (only the holes are 0)
            lab = flood(level, np.where(holes, 0, lab))
    return _relabel_raster(lab)


def overlap_pairs(a: np.ndarray, b: np.ndarray, interior: np.ndarray, min_overlap: float):
    """(ids of a, ids of b) to join where two labellings of the same pixels agree: the overlap of a and b on
    ``interior`` pixels covers more than ``min_overlap`` of the smaller of the two there (0 ids ignored)."""
    m = interior & (a != 0) & (b != 0)
    if not m.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    pa, pb = a[m].astype(np.int64), b[m].astype(np.int64)
    base = int(pb.max()) + 1
    keys, counts = np.unique(pa * base + pb, return_counts=True)
    ka, kb = keys // base, keys % base
    ua, ca = np.unique(pa, return_counts=True)
    ub, cb = np.unique(pb, return_counts=True)
    size_a = ca[np.searchsorted(ua, ka)]
    size_b = cb[np.searchsorted(ub, kb)]
    keep = counts > min_overlap * np.minimum(size_a, size_b)
    return ka[keep], kb[keep]
