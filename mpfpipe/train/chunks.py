"""The chunk plan of a batch: which images each gradient task computes, and the fixed reduction tree over chunks.

Why chunks. A Dask task costs about a millisecond of scheduler time and a transfer for every result that moves;
with one task per image the paper's workloads (thousands of 137x60 steel images of a few ms each) spend most of an
evaluation in the scheduler. A chunk task computes the fragment gradients of a run of consecutive images and sums
them in float64, in index order, so the cluster sees a few hundred tasks at most, each long enough that scheduling
is noise.

Why this plan. It must be a pure function of the batch (image indices and sizes, the net, the target): never of
the worker count, placement or timing, so the summation order -- and therefore every bit of the reduced gradient
-- is the same on any cluster. Sizing:

- each image's cost is estimated from its pixels: ``IMAGE_OVERHEAD`` plus the dense job's flops (``cost.flops``,
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
- the boundaries split the cumulative estimated cost evenly, so chunks of unequal images still cost alike;
- a *fine tail*: with 4 chunks or more, the last ``1/TAIL_SHARE`` of them (at least one, at most ``TAIL_MAX``)
  are each cut into ``TAIL_SPLIT`` finer chunks (256 steel images of 100x100: 14 chunks of 16 images, then 8 of
  4). The oracle hands these out as workers run dry (`feed`), so workers that run at different speeds (one shares
  its core with the driver, say) still finish within a fine chunk of each other instead of a whole chunk or more
  apart. At most 8 fine chunks: each one handed out costs a driver round trip, and with many workers on few
  cores (16 simulated workers on 2 cores, 4,096 images) a tail of 64 fine chunks measured efficiency 0.71 to
  0.80 against 0.85 to 0.89 without a tail; 8 fine chunks measured 0.88 to 0.90.

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
TAIL_SHARE = 8             # the last 1/TAIL_SHARE of a plan's chunks (at least one, from 4 chunks up, ...
TAIL_MAX = 2               # ... at most two) are each cut into TAIL_SPLIT: the fine tail, handed out as workers
TAIL_SPLIT = 4             # run dry


def image_cost(net, *size, phase: str = "train") -> float:
    """Estimated seconds of one image's (h, w) -- or a volume unit's (d, h, w) -- fragment pass at one thread
    (``phase`` "train" or "infer", also accepted as the last positional argument)."""
    from ..cost import flops
    if size and isinstance(size[-1], str):
        size, phase = size[:-1], size[-1]
    return IMAGE_OVERHEAD + flops(net, True, tuple(int(n) for n in size), phase) / REFERENCE_RATE


def nice_count(n: float) -> int:
    """The smallest power of two >= n (at least 1)."""
    n = max(1, int(math.ceil(n)))
    return 1 << (n - 1).bit_length()


def _pow2_below(n: float) -> int:
    """The largest power of two <= n (at least 1)."""
    return 1 << max(0, int(math.floor(max(n, 1.0))).bit_length() - 1)


def plan_chunks(indices, costs, target: float = CHUNK_SECONDS, floor: float = MIN_CHUNK_SECONDS,
                spread: int = SPREAD) -> "Plan":
    """Split ``indices`` (sorted, unique) into consecutive chunks of about ``target`` summed cost each, or into up
    to ``spread`` chunks of at least ``floor`` (at most ``target``) when that makes more of them. ``costs[j]`` is
    the estimated cost of ``indices[j]``; with 4 chunks or more, the last of them are cut finer (the fine tail, see
    the module docstring). A pure function of its arguments."""
    idx = [int(i) for i in indices]
    if not idx:
        return Plan([])
    if any(b <= a for a, b in zip(idx, idx[1:])):
        raise ValueError("plan_chunks needs sorted, unique image indices")
    if not target > 0:
        raise ValueError(f"chunk target must be positive, got {target!r}")
    c = np.asarray(costs, np.float64)
    total = float(c.sum())
    floor = min(floor, target)
    m = min(len(idx), max(nice_count(total / target), min(spread, _pow2_below(total / floor))))
    bounds = _split(c, m)
    chunks = [idx[a:b] for a, b in zip(bounds, bounds[1:])]
    if m < 4:
        return Plan(chunks)
    n_tail = max(1, min(m // TAIL_SHARE, TAIL_MAX))
    fine = []
    for a, b in zip(bounds[-1 - n_tail:], bounds[-n_tail:]):
        sub = _split(c[a:b], min(TAIL_SPLIT, b - a))
        fine += [idx[a + u:a + v] for u, v in zip(sub, sub[1:])]
    return Plan(chunks[:-n_tail] + fine, fine=len(fine))


class Plan(list):
    """A chunk plan: the chunks (lists of image indices) in order; its last ``fine`` chunks are the fine tail."""

    def __init__(self, chunks, fine: int = 0):
        super().__init__(chunks)
        self.fine = int(fine)


def _split(c, m: int) -> list[int]:
    """Boundaries of ``m`` consecutive runs of the costs ``c`` of about equal sums (at least one item each):
    boundary k goes where the cumulative cost first reaches k/m of the total."""
    if m <= 1:
        return [0, len(c)]
    total = float(np.sum(c))
    ends = np.cumsum(c) - c / 2  # the image's midpoint on the cost axis
    cut = np.searchsorted(ends, total * np.arange(1, m) / m, side="left")
    bounds = [0]
    for k, b in enumerate(cut):
        b = int(min(max(b, bounds[-1] + 1), len(c) - (m - 1 - k)))
        bounds.append(b)
    bounds.append(len(c))
    return bounds


def tree_levels(n: int, fanin: int = FANIN) -> list[list[tuple[int, int]]]:
    """The reduction tree over ``n`` leaves: per level, the (start, stop) ranges of the previous level's nodes
    that each new node sums. A level with one node ends it."""
    levels = []
    while n > 1:
        groups = [(j, min(j + fanin, n)) for j in range(0, n, fanin)]
        levels.append(groups)
        n = len(groups)
    return levels
