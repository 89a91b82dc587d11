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

BINS = 64  # histogram bins of the quantile score (waterz: 256); 1/64 is finer than the merge thresholds we tune


@numba.njit(cache=True)
def _score(e, sums, counts, hist, q):
    if q < 0:
        return sums[e] / counts[e]
    pivot = min(q * counts[e] // 100 + 1, counts[e])  # q = 100: the largest value (waterz runs past it)
    total = 0
    bins = hist.shape[1]
    for k in range(bins):
        total += hist[e, k]
        if total >= pivot:
            return (k + 0.5) / bins
    return (bins - 0.5) / bins


@numba.njit(cache=True)
def _merge(n, eu, ev, sums, counts, hist, q, threshold):
    """Root of each node 0..n-1 after merging every edge cheaper than ``threshold``, cheapest first."""
    m = eu.size
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
        heap.append((_score(e, sums, counts, hist, q), np.int64(e), np.int64(0)))
    heapq.heapify(heap)
    while heap:
        s, e, ver = heap[0]
        if s >= threshold:
            break
        heapq.heappop(heap)
        if deleted[e] or ver != version[e]:
            continue
        a, b = eu[e], ev[e]
        keep, gone = (a, b) if len(adj[a]) >= len(adj[b]) else (b, a)  # fold the smaller edge list
        deleted[e] = True
        del key[min(a, b) * n + max(a, b)]
        parent[gone] = keep
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
                if q >= 0:
                    hist[g] += hist[f]
                deleted[f] = True
                version[g] += 1
                heapq.heappush(heap, (_score(g, sums, counts, hist, q), g, version[g]))
            else:  # the neighbour of one only: the edge moves over, its score is unchanged
                if eu[f] == gone:
                    eu[f] = keep
                else:
                    ev[f] = keep
                key[k2] = f
                adj[keep].append(f)
    for i in range(n):  # path halving to the roots
        r = i
        while parent[r] != r:
            r = parent[r]
        parent[i] = r
    return parent


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


@numba.njit(cache=True)
def _scores(sums, counts, hist, q):
    out = np.empty(sums.size)
    for e in range(sums.size):
        out[e] = _score(e, sums, counts, hist, q)
    return out


def agglomerate(lab: np.ndarray, p: np.ndarray, threshold: float, quantile: int | None = None,
                hierarchical: bool = True) -> np.ndarray:
    """``lab`` (ids >= 0, 0 = none) with touching regions merged while their boundary score is below
    ``threshold``. Score: the mean boundary probability (``quantile`` None) or its ``quantile``-th percentile.
    ``hierarchical``: cheapest edge first, the merged regions' boundaries re-scored (waterz); else one-shot: every
    edge of the initial regions scored once, all those below the threshold joined (connected components). Each
    merged region keeps the smallest id of its fragments."""
    a, b, sums, counts, hist = boundary_stats(lab, p, quantile is not None)
    n = int(lab.max()) + 1
    if not a.size:
        return lab
    q = -1 if quantile is None else int(quantile)
    hist = np.zeros((1, 1), np.int64) if hist is None else hist
    if hierarchical:
        root = _merge(n, a, b, sums, counts, hist, q, float(threshold))
    else:
        join = _scores(sums, counts, hist, q) < threshold
        root = union(n, a[join], b[join])
    # the smallest fragment id of each merged region names it (roots depend on the merge order)
    low = np.full(n, n, np.int64)
    np.minimum.at(low, root, np.arange(n))
    return low[root][lab]
