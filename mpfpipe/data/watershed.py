"""Instances of one section from its membrane probability, and the pairs that join them across block faces and
sections (no I/O, no Dask: `mpfpipe.segment.instances` drives them blockwise, `mpfpipe.evaluate.instances` tunes
their parameters; they sit here, below both).

One section (or a tile of it with its context margin):

1. cell region = ``p < threshold``; seeds = the maxima of its Euclidean distance transform at least
   ``seed_distance`` pixels apart, one region per seed (plus one seed for a cell component without a maximum);
2. seeded watershed of ``p`` from the seeds (scikit-image), filling the whole section: every pixel belongs to the
   object whose seed floods it first, membranes are shared out between their two sides;
3. region merging: two touching objects are joined when the mean probability along their common boundary (over
   the 4-neighbour pixel pairs across it, each pair's mean) is below ``merge_threshold`` (a membrane between two
   cells has a high mean, a cut through one cell a low one), as one union-find over the adjacency graph;
4. objects smaller than ``min_size`` pixels are dropped and their pixels flooded again from their neighbours.

Ids are 1..n, numbered in raster order of each object's first pixel, so the same input gives the same ids.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..options import OPTIONS

# The parameters of the instance step, and their defaults as mpfpipe.options declares them (OPTIONS["instances"])
PARAMS = ("threshold", "seed_distance", "merge_threshold", "min_size", "link_slices", "link_overlap", "margin")
DEFAULTS = {name: OPTIONS["instances"][name].default for name in PARAMS}


def _relabel_raster(lab: np.ndarray) -> np.ndarray:
    """Ids 1..n in raster order of first appearance (0 stays 0)."""
    ids, first = np.unique(lab.ravel(), return_index=True)
    keep = ids != 0
    order = np.argsort(first[keep], kind="stable")
    lut = np.zeros(int(ids.max()) + 1 if ids.size else 1, np.int64)
    lut[ids[keep][order]] = np.arange(1, int(keep.sum()) + 1)
    return lut[lab].astype(np.int64)


def union(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Component index (0..) of nodes 0..n-1 joined by the edges (a, b): scipy's connected components."""
    if n == 0:
        return np.zeros(0, np.int64)
    g = coo_matrix((np.ones(len(a), np.int8), (np.asarray(a, np.int64), np.asarray(b, np.int64))), shape=(n, n))
    return connected_components(g, directed=False)[1].astype(np.int64)


def boundary_means(lab: np.ndarray, p: np.ndarray):
    """(a, b, mean boundary probability) of every pair of touching ids a < b (4-neighbours)."""
    pairs, vals = [], []
    for axis in (0, 1):
        la, lb = np.moveaxis(lab, axis, 0)[:-1], np.moveaxis(lab, axis, 0)[1:]
        pa, pb = np.moveaxis(p, axis, 0)[:-1], np.moveaxis(p, axis, 0)[1:]
        m = (la != lb) & (la != 0) & (lb != 0)
        pairs.append(np.stack([np.minimum(la[m], lb[m]), np.maximum(la[m], lb[m])], 1))
        vals.append((pa[m].astype(np.float64) + pb[m]) / 2)
    pairs, vals = np.concatenate(pairs).astype(np.int64), np.concatenate(vals)
    if not len(pairs):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    base = int(pairs.max()) + 1  # one int64 key per pair: a 1-D unique is much faster than unique(axis=0)
    uniq, inv = np.unique(pairs[:, 0] * base + pairs[:, 1], return_inverse=True)
    inv = inv.ravel()
    means = np.bincount(inv, weights=vals) / np.bincount(inv)
    return uniq // base, uniq % base, means


def _seeds(cells: np.ndarray, seed_distance: int) -> np.ndarray:
    from skimage.feature import peak_local_max
    comp, n = ndimage.label(cells)
    dist = ndimage.distance_transform_edt(cells)
    peaks = peak_local_max(dist, min_distance=max(1, int(seed_distance)), labels=comp, exclude_border=False)
    markers = np.zeros(cells.shape, np.int64)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    missing = np.setdiff1d(np.arange(1, n + 1), comp[tuple(peaks.T)])
    if missing.size:  # a cell component without a maximum (a plateau peak_local_max left out): its deepest pixel
        where = ndimage.maximum_position(dist, comp, missing)
        for k, (y, x) in enumerate(where):
            markers[y, x] = len(peaks) + 1 + k
    return markers


def section_instances(p: np.ndarray, *, threshold: float, seed_distance: int, merge_threshold: float,
                      min_size: int) -> np.ndarray:
    """Object ids (int64, 1..n, raster order; 0 only where no cell pixel exists at all) of one section."""
    from skimage.segmentation import watershed
    p = np.asarray(p, dtype=np.float32)
    cells = p < threshold
    if not cells.any():
        return np.zeros(p.shape, np.int64)
    lab = watershed(p, _seeds(cells, seed_distance))
    a, b, means = boundary_means(lab, p)
    join = means < merge_threshold
    comp = union(int(lab.max()) + 1, a[join], b[join])
    lab = np.where(lab > 0, comp[lab] + 1, 0)
    if min_size > 1:
        sizes = np.bincount(lab.ravel())
        small = sizes < min_size
        small[0] = False
        if small.any() and not small[lab].all():
            lab = watershed(p, np.where(small[lab], 0, lab))
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
