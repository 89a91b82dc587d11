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
  ~1 ms of scheduling per task that is 0.2 % of it); but a smaller batch is still cut into up to ``SPREAD`` (64)
  chunks of at least ``MIN_CHUNK_SECONDS`` (0.2 s), so that up to 64 workers share it (32 steel images of
  100x100, 0.44 s in all: 2 chunks, not 1; 256 of them, 3.5 s: 16 chunks, not 8);
- the number of chunks is a power of two (rounded up from total / target, so chunks cost target/2 to target), so
  a cluster of 1, 2, 4, 8, 16, ... workers gets an equal share of chunks of equal cost and any other count gets
  shares within one chunk of each other (256 steel images of 100x100 on 2 workers: 16 chunks, 8 each; 4,096 of
  137x60 on 16: 128 chunks, 8 each); it never exceeds the number of images;
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
MIN_CHUNK_SECONDS = 0.2    # ... but a batch of under SPREAD such chunks is cut into chunks down to this
SPREAD = 64
REFERENCE_RATE = 25e9      # flop/s of one thread on the steel net, measured (see the module docstring)
IMAGE_OVERHEAD = 1e-3      # seconds per image outside the kernels (sampling, unravel, packing), measured
FANIN = 16                 # children per node of the reduction tree


def image_cost(net, h: int, w: int, phase: str = "train") -> float:
    """Estimated seconds of one image's fragment pass at one thread (``phase`` "train" or "infer")."""
    from ..bench import flops
    return IMAGE_OVERHEAD + flops(net, True, (int(h), int(w)), phase) / REFERENCE_RATE


def nice_count(n: float) -> int:
    """The smallest power of two >= n (at least 1)."""
    n = max(1, int(math.ceil(n)))
    return 1 << (n - 1).bit_length()


def _pow2_below(n: float) -> int:
    """The largest power of two <= n (at least 1)."""
    return 1 << max(0, int(math.floor(max(n, 1.0))).bit_length() - 1)


def plan_chunks(indices, costs, target: float = CHUNK_SECONDS, floor: float = MIN_CHUNK_SECONDS,
                spread: int = SPREAD) -> list[list[int]]:
    """Split ``indices`` (sorted, unique) into consecutive chunks of about ``target`` summed cost each, or into up
    to ``spread`` chunks of at least ``floor`` (at most ``target``) when that makes more of them. ``costs[j]`` is
    the estimated cost of ``indices[j]``. A pure function of its arguments."""
    idx = [int(i) for i in indices]
    if not idx:
        return []
    if any(b <= a for a, b in zip(idx, idx[1:])):
        raise ValueError("plan_chunks needs sorted, unique image indices")
    if not target > 0:
        raise ValueError(f"chunk target must be positive, got {target!r}")
    c = np.asarray(costs, np.float64)
    total = float(c.sum())
    floor = min(floor, target)
    m = min(len(idx), max(nice_count(total / target), min(spread, _pow2_below(total / floor))))
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
