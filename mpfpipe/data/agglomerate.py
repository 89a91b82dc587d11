"""Hierarchical agglomeration of watershed fragments by their boundary probability, as waterz does it.

Followed: funkey/waterz, ``backend/IterativeRegionMerging.hpp`` (``mergeUntil``: pop the cheapest edge of a
priority queue, stop once its score reaches the threshold, merge its two regions, and fold the edges of one
region into the other: an edge to a neighbour both regions touch is merged into one edge whose statistics are
the sum of the two), with the edge scores of ``MeanAffinityProvider.hpp`` (mean of all boundary values: sum and
count add on merging) and ``HistogramQuantileProvider.hpp`` (a quantile from a histogram of the boundary values in
[0, 1]: histograms add on merging; the q-th quantile is the first bin whose cumulative count reaches the 1-based
pivot ``q * total / 100 + 1``, reported as the bin centre ``(bin + 0.5) / bins``, ``discretize.hpp``). Here the
boundary values are membrane probabilities (waterz scores ``1 - affinity``: the same order), and the score is
mean or a quantile (the median: q = 50; low quantiles such as 5 join two regions where a stretch of their
boundary is clearly not membrane, a gap a mean over the whole boundary hides).

Two differences from waterz, both so that the result does not depend on the order of ties or on stale entries:
the queue is ordered by (score, edge id), and an edge whose statistics change is pushed again at once with its
new score (a version number retires the old entry) instead of being re-scored lazily when popped; for the mean
the merged score can be lower than both parents' (never for waterz's lazy re-scoring, which assumes it only
grows), so this is the exact "cheapest edge first" order.
"""
from __future__ import annotations

import heapq

import numba
import numpy as np
from numba.typed import Dict, List

from .. import _kernel_cache  # noqa: F401 - cache entries stamped with all kernel sources
from ..errors import DataError

BINS = 64  # histogram bins of the quantile score (waterz: 256); 1/64 is finer than the merge thresholds we tune
MEAN, LEARNED = -1, -2  # the score's q when it is not a percentile
QUANTILES = np.array([5, 25, 50, 75, 95])  # the boundary percentiles among the learned score's features
FEATURES = ("boundary_mean", *(f"boundary_q{q}" for q in QUANTILES), "log_boundary_length", "log_min_size",
            "log_max_size", "min_interior_mean", "max_interior_mean")
N_FEATURES = len(FEATURES)


@numba.njit(cache=True, nogil=True)
def _quantile(e, counts, hist, q):
    pivot = min(q * counts[e] // 100 + 1, counts[e])  # q = 100: the largest value (waterz runs past it)
    total = 0
    bins = hist.shape[1]
    for k in range(bins):
        total += hist[e, k]
        if total >= pivot:
            return (k + 0.5) / bins
    return (bins - 0.5) / bins


@numba.njit(cache=True, nogil=True)
def _score(e, eu, ev, sums, counts, hist, nsize, nsum, q, clf):
    """Edge e's score: the mean (q = MEAN), the q-th percentile (q >= 0) or the learned classifier's probability
    that its two regions are different objects (q = LEARNED, `merge_learn`)."""
    if q == MEAN:
        return sums[e] / counts[e]
    if q >= 0:
        return _quantile(e, counts, hist, q)
    x = np.empty(N_FEATURES)
    features(e, eu, ev, sums, counts, hist, nsize, nsum, x)
    return classify(x, clf)


@numba.njit(cache=True, nogil=True)
def features(e, eu, ev, sums, counts, hist, nsize, nsum, x):
    """Edge e's features (`FEATURES`) into x: from statistics that add when regions merge (boundary sums, counts
    and histograms; region sizes and probability sums), so they are exact at every step of the merging."""
    x[0] = sums[e] / counts[e]
    for j in range(QUANTILES.size):
        x[1 + j] = _quantile(e, counts, hist, QUANTILES[j])
    x[6] = np.log(counts[e])
    a, b = eu[e], ev[e]
    sa, sb = nsize[a], nsize[b]
    ma, mb = nsum[a] / sa, nsum[b] / sb
    x[7] = np.log(min(sa, sb))
    x[8] = np.log(max(sa, sb))
    x[9] = min(ma, mb)
    x[10] = max(ma, mb)


@numba.njit(cache=True, nogil=True)
def classify(x, clf):
    """The logistic regression ``clf`` (rows: centre, scale, coefficients of the features; bias in clf[3, 0]) of
    the features x: 1 / (1 + exp(-(bias + sum_k coef_k (x_k - centre_k) / scale_k)))."""
    z = clf[3, 0]
    for k in range(x.size):
        z += clf[2, k] * (x[k] - clf[0, k]) / clf[1, k]
    return 1.0 / (1.0 + np.exp(-z))


@numba.njit(cache=True, nogil=True)
def _grown(rec, labels, k):
    """rec and labels with room for 2k rows, their first k kept. Element loops, not slice assignments: an array
    assigned to a slice brings in Numba's shape-mismatch error, whose message formatting took 5 of the 7 s that
    `_merge` took to compile at first use."""
    rec2 = np.empty((2 * k, rec.shape[1]))
    lab2 = np.empty(2 * k, np.int8)
    for i in range(k):
        lab2[i] = labels[i]
        for j in range(rec.shape[1]):
            rec2[i, j] = rec[i, j]
    return rec2, lab2


@numba.njit(cache=True, nogil=True)
def _merge(n, eu, ev, sums, counts, hist, nsize, nsum, q, clf, threshold, gt):
    """(root of each node 0..n-1, recorded features, labels) after merging every edge cheaper than
    ``threshold``, cheapest first. With ``gt`` (one ground-truth id per node, 0 = none; empty otherwise) it
    learns instead, as GALA's ``Rag._learn_agglomerate`` in its 'strict' mode (see `merge_learn`): every edge
    popped is recorded (its features, label 1 when the two regions' ground-truth ids differ), and merged only
    when they agree; then the queue runs to its end."""
    m = eu.size
    learning = gt.size > 0
    rescore = learning or q == LEARNED  # node statistics changed: every edge of the merged region moves
    parent = np.arange(n)
    version = np.zeros(m, np.int64)
    deleted = np.zeros(m, np.bool_)
    key = Dict.empty(numba.int64, numba.int64)  # (min, max) of the two live regions -> the edge between them
    adj = List()
    for _ in range(n):
        adj.append(List.empty_list(numba.int64))
    heap = [(0.0, np.int64(0), np.int64(0))]
    heap.pop()
    for e in range(m):
        key[min(eu[e], ev[e]) * n + max(eu[e], ev[e])] = e
        adj[eu[e]].append(e)
        adj[ev[e]].append(e)
        heap.append((_score(e, eu, ev, sums, counts, hist, nsize, nsum, q, clf), np.int64(e), np.int64(0)))
    heapq.heapify(heap)
    rec = np.empty((m + 16 if learning else 0, N_FEATURES))
    labels = np.empty(rec.shape[0], np.int8)
    k = 0
    while heap:
        s, e, ver = heap[0]
        if s >= threshold:
            break
        heapq.heappop(heap)
        if deleted[e] or ver != version[e]:
            continue
        a, b = eu[e], ev[e]
        if learning:
            if gt[a] != 0 and gt[b] != 0:  # a region without truth (all membrane) teaches nothing
                if k == rec.shape[0]:  # grow (a rejected edge is met again each time a side of it grows)
                    rec, labels = _grown(rec, labels, k)
                features(e, eu, ev, sums, counts, hist, nsize, nsum, rec[k])
                labels[k] = gt[a] != gt[b]
                k += 1
                if gt[a] != gt[b]:  # strict: a wrong merge is learned, not made
                    continue
            gt[a] = gt[b] = max(gt[a], gt[b])
        keep, gone = (a, b) if len(adj[a]) >= len(adj[b]) else (b, a)  # fold the smaller edge list
        deleted[e] = True
        del key[min(a, b) * n + max(a, b)]
        parent[gone] = keep
        nsize[keep] += nsize[gone]
        nsum[keep] += nsum[gone]
        for f in adj[gone]:
            if deleted[f]:
                continue
            w = eu[f] if ev[f] == gone else ev[f]
            del key[min(gone, w) * n + max(gone, w)]
            k2 = min(keep, w) * n + max(keep, w)
            if k2 in key:  # a neighbour of both: one edge, the statistics of both
                g = key[k2]
                sums[g] += sums[f]
                counts[g] += counts[f]
                if hist.shape[0] == m:  # histograms kept (not for the mean)
                    for j in range(hist.shape[1]):  # element loops here: see `_grown`
                        hist[g, j] += hist[f, j]
                deleted[f] = True
                if not rescore:
                    version[g] += 1
                    heapq.heappush(heap, (_score(g, eu, ev, sums, counts, hist, nsize, nsum, q, clf), g,
                                          version[g]))
            else:  # the neighbour of one only: the edge moves over, its boundary statistics unchanged
                if eu[f] == gone:
                    eu[f] = keep
                else:
                    ev[f] = keep
                key[k2] = f
                adj[keep].append(f)
        if rescore:
            for f in adj[keep]:
                if not deleted[f]:
                    version[f] += 1
                    heapq.heappush(heap, (_score(f, eu, ev, sums, counts, hist, nsize, nsum, q, clf), f,
                                          version[f]))
    for i in range(n):  # path halving to the roots
        r = i
        while parent[r] != r:
            r = parent[r]
        parent[i] = r
    return parent, rec[:k], labels[:k]


def union(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Component index (0..) of nodes 0..n-1 joined by the edges (a, b): scipy's connected components."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    if n == 0:
        return np.zeros(0, np.int64)
    g = coo_matrix((np.ones(len(a), np.int8), (np.asarray(a, np.int64), np.asarray(b, np.int64))), shape=(n, n))
    return connected_components(g, directed=False)[1].astype(np.int64)


def boundary_stats(lab: np.ndarray, p: np.ndarray, histograms: bool = False):
    """(a, b, sums, counts, histograms or None) of every pair of touching ids a < b of ``lab`` (4-neighbours,
    0 = none); each pixel pair across their boundary contributes the mean of its two probabilities."""
    keys, vals = [], []
    base = int(lab.max()) + 1
    for axis in (0, 1):
        la, lb = np.moveaxis(lab, axis, 0)[:-1], np.moveaxis(lab, axis, 0)[1:]
        pa, pb = np.moveaxis(p, axis, 0)[:-1], np.moveaxis(p, axis, 0)[1:]
        m = (la != lb) & (la != 0) & (lb != 0)
        x, y = la[m].astype(np.int64), lb[m].astype(np.int64)
        keys.append(np.minimum(x, y) * base + np.maximum(x, y))  # one int64 key per pair: a fast 1-D unique
        vals.append((pa[m].astype(np.float64) + pb[m]) / 2)
    keys, vals = np.concatenate(keys), np.concatenate(vals)
    uniq, inv = np.unique(keys, return_inverse=True)
    inv = inv.ravel()
    sums = np.bincount(inv, weights=vals, minlength=uniq.size)
    counts = np.bincount(inv, minlength=uniq.size).astype(np.int64)
    hist = None
    if histograms:  # waterz's discretize: bin = min(int(v * BINS), BINS - 1), 0 below 0
        k = np.clip((vals * BINS).astype(np.int64), 0, BINS - 1)
        hist = np.bincount(inv * BINS + k, minlength=uniq.size * BINS).reshape(uniq.size, BINS).astype(np.int64)
    return uniq // base, uniq % base, sums, counts, hist


def region_stats(lab: np.ndarray, p: np.ndarray):
    """(pixel count, probability sum) of every id 0..max of ``lab``: the regions' statistics of the learned
    score, which add when regions merge."""
    n = int(lab.max()) + 1
    return (np.bincount(lab.ravel(), minlength=n).astype(np.int64),
            np.bincount(lab.ravel(), weights=np.asarray(p, np.float64).ravel(), minlength=n))


@numba.njit(cache=True, nogil=True)
def edge_features(eu, ev, sums, counts, hist, nsize, nsum):
    """The features (`FEATURES`) of every edge of the initial regions (one row each)."""
    out = np.empty((eu.size, N_FEATURES))
    for e in range(eu.size):
        features(e, eu, ev, sums, counts, hist, nsize, nsum, out[e])
    return out


@numba.njit(cache=True, nogil=True)
def _scores(eu, ev, sums, counts, hist, nsize, nsum, q, clf):
    out = np.empty(sums.size)
    for e in range(sums.size):
        out[e] = _score(e, eu, ev, sums, counts, hist, nsize, nsum, q, clf)
    return out


NO_CLASSIFIER = np.zeros((4, N_FEATURES))
NO_TRUTH = np.zeros(0, np.int64)


def classifier_array(record) -> np.ndarray:
    """The (4, features) array `agglomerate.classify` evaluates (rows centre, scale, coef; bias at [3, 0]) of a
    classifier record (`merge_learn.fit`); a missing or malformed one is refused with one line."""
    if record is None:
        raise DataError("merge_score 'learned' needs a fitted merge classifier (merge_classifier): choose the "
                        "instance parameters with `mpfpipe evaluate --tune-instances` first")
    try:
        ok = record.get("kind") == "logistic" and list(record.get("features")) == list(FEATURES)
        out = np.array([record["centre"], record["scale"], record["coef"],
                        [record["bias"]] + [0.0] * (N_FEATURES - 1)], np.float64)
    except (AttributeError, KeyError, TypeError, ValueError):
        ok, out = False, NO_CLASSIFIER
    if not ok or out.shape != (4, N_FEATURES) or not np.isfinite(out).all() or (out[1] <= 0).any():
        raise DataError(f"merge_classifier is not a logistic regression of the features {', '.join(FEATURES)} "
                        "(centre, scale > 0, coef: finite numbers, one per feature; bias)")
    return out


def graph(lab: np.ndarray, p: np.ndarray, histograms: bool = True, regions: bool = True):
    """(a, b, sums, counts, hist, nsize, nsum): the region adjacency graph of ``lab`` with the statistics the
    scores need (hist a (1, 1) placeholder without ``histograms``; without ``regions``, zero region statistics:
    only the learned score reads them, and counting them took ~0.1 s of a 2048 x 2048 section's 1.1 s)."""
    a, b, sums, counts, hist = boundary_stats(lab, p, histograms)
    if regions:
        nsize, nsum = region_stats(lab, p)
    else:
        n = int(lab.max()) + 1
        nsize, nsum = np.zeros(n, np.int64), np.zeros(n)
    return a, b, sums, counts, np.zeros((1, 1), np.int64) if hist is None else hist, nsize, nsum


def agglomerate(lab: np.ndarray, p: np.ndarray, threshold: float, quantile: int | None = None,
                hierarchical: bool = True, classifier: np.ndarray | None = None) -> np.ndarray:
    """``lab`` (ids >= 0, 0 = none) with touching regions merged while their boundary score is below
    ``threshold``. Score: the mean boundary probability (``quantile`` None), its ``quantile``-th percentile, or
    with ``classifier`` (`classifier_array`) the learned probability that the two regions are
    different objects. ``hierarchical``: cheapest edge first, the merged regions' boundaries re-scored (waterz;
    the learned score re-scores every boundary of the merged region, its sizes and interior changed); else
    one-shot: every edge of the initial regions scored once, all those below the threshold joined (connected
    components). Each merged region keeps the smallest id of its fragments."""
    learned = classifier is not None
    a, b, sums, counts, hist, nsize, nsum = graph(lab, p, learned or quantile is not None, learned)
    n = int(lab.max()) + 1
    if not a.size:
        return lab
    q = LEARNED if learned else MEAN if quantile is None else int(quantile)
    clf = np.asarray(classifier, np.float64) if learned else NO_CLASSIFIER
    if hierarchical:
        root = _merge(n, a, b, sums, counts, hist, nsize, nsum, q, clf, float(threshold), NO_TRUTH)[0]
    else:
        join = _scores(a, b, sums, counts, hist, nsize, nsum, q, clf) < threshold
        root = union(n, a[join], b[join])
    # the smallest fragment id of each merged region names it (roots depend on the merge order)
    low = np.full(n, n, np.int64)
    np.minimum.at(low, root, np.arange(n))
    return low[root][lab]
