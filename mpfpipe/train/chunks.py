"""The chunk plan of a batch: which images each gradient task computes, and the fixed reduction tree over chunks.

Why chunks. A Dask task costs about a millisecond of scheduler time and a transfer for every result that moves;
with one task per image the paper's workloads (thousands of 137x60 steel images of a few ms each) spend most of an
evaluation in the scheduler. A chunk task computes the fragment gradients of a run of consecutive images and sums
them in float64, in index order, so the cluster sees a few hundred tasks at most, each long enough that scheduling
is noise.

Why this plan. It must be a pure function of the batch (image indices and sizes, the net, the target): never of
the worker count, placement or timing, so the summation order -- and therefore every bit of the reduced gradient
-- is the same on any cluster. Sizing:

- each image's cost is estimated from its pixels: ``IMAGE_OVERHEAD`` plus the dense job's flops (``bench.flops``,
  training = forward + both gradients) at ``REFERENCE_RATE``, the rate one thread of the 2-core development VM
  reached on the steel net (~25 GFLOP/s at 100x100, 12 ms a step measured by ``mpfpipe bench``; the GEMM-bound
  n3 / n4 run faster, so their estimate is pessimistic, which only makes their chunks smaller);
- a chunk should take about ``target`` estimated seconds (default ``CHUNK_SECONDS`` = 0.5 s at one thread: with
  ~1 ms of scheduling per task that is 0.2 % of it);
- the number of chunks is then rounded *up* to a number of the form 2^a or 3 * 2^a (1, 2, 3, 4, 6, 8, 12, 16,
  24, ...), so a cluster of 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, ... workers gets an equal share of chunks of
  equal cost (256 equal images on 2 workers: 8 chunks, 4 each; 4,096 on 16: 128 chunks, 8 each), and never
  exceeds the number of images;
- the boundaries split the cumulative estimated cost evenly, so chunks of unequal images still cost alike.

Reduction: chunk results are summed in a fixed tree with fan-in ``FANIN`` (16): level by level, each node adds
its (up to) 16 children left to right. Fewer levels than a pairwise tree (256 chunks: 2 levels, 17 add tasks, not
255), so fewer tasks, transfers and latencies on the critical path, in an order that again depends only on the
number of chunks.
"""
from __future__ import annotations

import math

import numpy as np

CHUNK_SECONDS = 0.5        # target estimated seconds of one gradient task (at one thread)
REFERENCE_RATE = 25e9      # flop/s of one thread on the steel net, measured (see the module docstring)
IMAGE_OVERHEAD = 1e-3      # seconds per image outside the kernels (sampling, unravel, packing), measured
FANIN = 16                 # children per node of the reduction tree


def image_cost(net, h: int, w: int, phase: str = "train") -> float:
    """Estimated seconds of one image's fragment pass at one thread (``phase`` "train" or "infer")."""
    from ..bench import flops
    return IMAGE_OVERHEAD + flops(net, True, (int(h), int(w)), phase) / REFERENCE_RATE


def nice_count(n: float) -> int:
    """The smallest number >= n of the form 2^a or 3 * 2^a (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, ...)."""
    n = max(1, int(math.ceil(n)))
    best = 1 << max(0, (n - 1).bit_length())  # the power of two >= n
    if n > 2:
        best = min(best, 3 << (-(-n // 3) - 1).bit_length())  # 3 * the power of two >= n / 3
    return best


def plan_chunks(indices, costs, target: float = CHUNK_SECONDS) -> list[list[int]]:
    """Split ``indices`` (sorted, unique) into consecutive chunks of about ``target`` summed cost each.
    ``costs[j]`` is the estimated cost of ``indices[j]``. A pure function of its arguments."""
    idx = [int(i) for i in indices]
    if not idx:
        return []
    if any(b <= a for a, b in zip(idx, idx[1:])):
        raise ValueError("plan_chunks needs sorted, unique image indices")
    if not target > 0:
        raise ValueError(f"chunk target must be positive, got {target!r}")
    c = np.asarray(costs, np.float64)
    total = float(c.sum())
    m = min(len(idx), nice_count(total / target))
    if m == 1:
        return [idx]
    # boundary k goes where the cumulative cost first reaches k/m of the total (at least one image per chunk)
    ends = np.cumsum(c) - c / 2  # the image's midpoint on the cost axis
    cut = np.searchsorted(ends, total * np.arange(1, m) / m, side="left")
    bounds = [0]
    for k, b in enumerate(cut):
        b = int(min(max(b, bounds[-1] + 1), len(idx) - (m - 1 - k)))
        bounds.append(b)
    bounds.append(len(idx))
    return [idx[a:b] for a, b in zip(bounds, bounds[1:])]


def tree_levels(n: int, fanin: int = FANIN) -> list[list[tuple[int, int]]]:
    """The reduction tree over ``n`` leaves: per level, the (start, stop) ranges of the previous level's nodes
    that each new node sums. A level with one node ends it."""
    levels = []
    while n > 1:
        groups = [(j, min(j + fanin, n)) for j in range(0, n, fanin)]
        levels.append(groups)
        n = len(groups)
    return levels
