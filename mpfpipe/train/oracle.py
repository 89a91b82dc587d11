"""The gradient oracle: (loss, gradient) of a batch of images, computed by chunk tasks on Dask workers and
reduced in a fixed tree.

- Chunks. The images are grouped into hold blocks of consecutive indices, each worth about half a second of one
  thread's work (`chunks`: a pure function of the index sets and image sizes, never of the cluster). A batch is
  computed by one task per block it touches, which sums its images' results in index order in float64.
- Data. In *persisted* mode each block is read from Zarr (normalised, not augmented) by a worker once and kept
  there as one future; in *stream* mode (``stream=True``, chosen automatically when the data would not fit in the
  workers' memory) each task reads its own images from Zarr, so only the images of the current batch are ever
  loaded. Both modes run the same pure function on the same arrays with the same blocks, hence give the same
  results.
- Tasks. ``tasks._chunk_task(data, indices, net, params, weights, spec, seed, epoch, ...)`` is a pure function of its
  arguments (augmentation is a pure function of (seed, epoch, index)), so Dask may run or re-run it on any
  worker: a lost worker's tasks are recomputed elsewhere with the same result.
- Reduction. Results are packed into one float64 vector ``[loss, class_loss(K), class_count(K), class_errors(K),
  gradient(n)]``; chunk vectors are summed in the fixed fan-in-16 tree of `chunks.tree_levels`, in block order:
  by add tasks on the workers, or, when all the chunk results together are small (`DRIVER_REDUCE_BYTES`), by the
  driver as they arrive (the same additions in the same order: the same bits, without the add tasks' latency).
  Nothing depends on worker count, placement or thread count (the kernels' own reductions use a fixed number of
  slabs, `kernels._head.SLABS`), so the sum is bit-identical on any cluster.
- Parameters travel once per evaluation: scattered to two workers (so a killed worker cannot take the only copy
  with it), and fetched from worker to worker by the tasks that need them.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import numpy as np

from ..errors import ClusterError
from ..params import n_params
from .chunks import CHUNK_SECONDS, FANIN, image_cost, plan_chunks, tree_levels
from .feed import Feeder
from .tasks import _add_list, _chunk_task, _count_task, _load_block, tree_sum


# ------------------------------------------------------------------------------------------------ results
@dataclass
class Eval:
    """A reduced evaluation: ``loss`` = sum_images sum_c w_c L_c, ``grad`` (n,) float64 or None, per-class sums,
    wall seconds on the driver, summed task seconds on the workers, the number of gradient tasks (chunks) and
    images, and where the wall time went (``timing``: broadcast, driver, reduction seconds; see `DaskOracle`)."""
    loss: float
    grad: np.ndarray | None
    class_loss: np.ndarray
    class_count: np.ndarray
    class_errors: np.ndarray
    wall: float
    task_seconds: float
    n_tasks: int
    packed: np.ndarray  # the raw reduced vector (for bit-identity checks)
    n_images: int = 0
    timing: dict = field(default_factory=dict)

    @property
    def pixel_error(self) -> float:
        n = self.class_count.sum()
        return float(self.class_errors.sum() / n) if n else float("nan")

    @property
    def balanced_error(self) -> float:
        """Mean over the classes present of their per-class error rate (what a class-balanced loss aims at)."""
        present = self.class_count > 0
        if not present.any():
            return float("nan")
        return float(np.mean(self.class_errors[present] / self.class_count[present]))


def unpack(vec: np.ndarray, K: int, grad: bool, wall=0.0, seconds=0.0, n_tasks=0, n_images=0, timing=None) -> Eval:
    return Eval(loss=float(vec[0]), grad=vec[1 + 3 * K:].copy() if grad else None,
                class_loss=vec[1:1 + K].copy(), class_count=vec[1 + K:1 + 2 * K].astype(np.int64),
                class_errors=vec[1 + 2 * K:1 + 3 * K].astype(np.int64), wall=wall, task_seconds=seconds,
                n_tasks=n_tasks, packed=vec, n_images=n_images, timing=dict(timing or {}))


class BaseOracle:
    """Common interface: ``evaluate(x, indices, weights, epoch, grad, augment)`` and
    ``class_counts(indices, epoch, augment)`` (``augment=False``: the stored images, e.g. for validation).

    Images are grouped into *hold blocks* when first seen (`hold`): `chunks.plan_chunks` over the sorted new
    indices. A batch is computed as one chunk per block it touches (its images of that block), blocks in the order
    they were made, so a full batch's chunks are its blocks and a mini-batch's chunks never span two blocks (in
    persisted mode a chunk's images are then on one worker). The plan depends only on the index sets held and the
    batch, so the same run sums in the same order whether its data are held or streamed, on any cluster."""

    def __init__(self, net, dataset, *, augment=None, seed: int = 0, dtype="float32",
                 chunk_seconds: float = CHUNK_SECONDS):
        self.net = net
        self.dataset = dataset
        self.spec = augment if (augment is not None and augment.active) else None
        self.seed = int(seed)
        self.dtype = np.dtype(dtype).name
        self.K = net.n_classes
        self.n = n_params(net)
        self.ignore = int(dataset.ignore_index)
        self.chunk_seconds = float(chunk_seconds)
        self._counts = {}
        self._blocks = []     # hold blocks: lists of image indices, in the order they were made
        self._block_of = {}   # image index -> block number
        self._cost = {}       # image index -> estimated seconds (`chunks.image_cost`)
        self._fine = set()    # blocks of a plan's fine tail (handed out as workers run dry, `feed`)
        self.n_evals = 0

    def _plan(self, indices) -> list[list[int]]:
        """Make hold blocks for the images of ``indices`` not in one yet; returns the new blocks."""
        new = sorted({int(i) for i in indices} - set(self._block_of))
        sizes = self.dataset.sizes
        for i in new:
            self._cost[i] = image_cost(self.net, *sizes[i])
        blocks = plan_chunks(new, [self._cost[i] for i in new], self.chunk_seconds)
        for k, b in enumerate(blocks):
            for i in b:
                self._block_of[i] = len(self._blocks)
            if k >= len(blocks) - blocks.fine:
                self._fine.add(len(self._blocks))
            self._blocks.append(b)
        return blocks

    def hold(self, indices):
        """Group these images into hold blocks (and, on a cluster in persisted mode, have workers keep them)."""
        self._plan(indices)

    def chunks(self, indices) -> list[tuple[int, list[int]]]:
        """(block number, sorted images of the batch in that block) for every block the batch touches, in order."""
        self.hold(indices)
        by_block = {}
        for i in sorted({int(i) for i in indices}):
            by_block.setdefault(self._block_of[i], []).append(i)
        return sorted(by_block.items())

    def class_counts(self, indices, epoch: int, augment: bool = True) -> np.ndarray:
        """Global class counts of the (augmented) labels of a batch; cached per batch (and epoch if augmented)."""
        spec = self.spec if augment else None
        key = (tuple(int(i) for i in indices), int(epoch) if spec is not None else 0, spec is not None)
        if key not in self._counts:
            if len(self._counts) > 256:
                self._counts.clear()
            self._counts[key] = self._count(self.chunks(key[0]), key[1], spec)
        return self._counts[key]

    def close(self):
        pass


class LocalOracle(BaseOracle):
    """The same chunks and tree run serially in this process (reference for tests, and tiny jobs)."""

    def _count(self, chunks, epoch, spec):
        return sum(_count_task(self.dataset, spec, self.seed, epoch, c, self.ignore, self.K) for _, c in chunks)

    def evaluate(self, x, indices, weights, epoch: int, grad: bool = True, augment: bool = True) -> Eval:
        t0 = time.perf_counter()
        spec = self.spec if augment else None
        chunks = self.chunks(indices)
        parts = [_chunk_task(self.dataset, c, self.net, np.asarray(x, np.float64), weights, spec, self.seed, epoch,
                             self.ignore, self.dtype, grad) for _, c in chunks]
        vec, sec = tree_sum(parts)[:2]
        self.n_evals += 1
        return unpack(vec, self.K, grad, time.perf_counter() - t0, sec, len(parts), len(indices))


# Up to this many bytes of chunk results per evaluation (steel: 128 chunks of 38 KB = 4.8 MB) the driver fetches
# them and runs the tree itself; above it (n3 / n4 on many chunks) the tree's add tasks run on the workers, so no
# single machine receives them all.
DRIVER_REDUCE_BYTES = 64 << 20
_LOST = ("CancelledError", "FutureCancelledError", "FuturesCancelledError", "KilledWorker", "CommClosedError")


class DaskOracle(BaseOracle):
    """Chunk tasks on a Dask cluster (see the module docstring). ``evaluate``'s ``timing``: ``broadcast`` (the
    parameter scatter), ``driver`` (building and submitting the graph, unpacking), ``reduction`` (from the end of
    the last gradient task to the reduced vector on the driver), the rest of the wall time being compute,
    scheduling and imbalance."""

    def __init__(self, client, net, dataset, *, augment=None, seed: int = 0, dtype="float32", stream=False,
                 retries: int = 3, chunk_seconds: float = CHUNK_SECONDS, replicas: int | None = 2):
        super().__init__(net, dataset, augment=augment, seed=seed, dtype=dtype, chunk_seconds=chunk_seconds)
        self.client = client
        self.replicas = replicas
        self._addrs = None  # worker addresses for the broadcast, cached (a scheduler round trip less per step)
        self.stream = bool(stream)
        self.retries = retries
        self.session = uuid.uuid4().hex[:8]
        self._held = {}  # block number -> future of {index: (image, labels)}
        self._where = {}  # block number -> the worker its chunk tasks should run on (None: anywhere)

    def hold(self, indices):
        """Plan the new images' blocks; in persisted mode have workers read each block once and keep it."""
        blocks = self._plan(indices)
        if not blocks:
            return
        first = len(self._blocks) - len(blocks)
        place = self._placement(blocks)
        for j in range(first, len(self._blocks)):
            self._where[j] = place[j - first][0] if place else None
        if self.stream:
            return
        for j, b in enumerate(blocks, start=first):
            self._held[j] = self.client.submit(_load_block, self.dataset, b, key=f"mpf-block-{self.session}-{j}",
                                               pure=False, workers=place.get(j - first),
                                               allow_other_workers=True if place else False)
        # surface read errors now, not in the middle of an iteration
        self.client.gather([self._held[j] for j in range(first, len(self._blocks))], errors="raise")

    def _placement(self, blocks) -> dict:
        """Spread the blocks over the workers by estimated cost (largest first onto the least-loaded worker), so
        each worker computes about the same share of every full-batch evaluation. Only a preference: placement
        never changes a result, and a lost worker's blocks are re-read elsewhere."""
        try:
            addrs = sorted(self.client.scheduler_info(n_workers=-1)["workers"])
        except Exception:  # noqa: BLE001
            return {}
        if len(addrs) < 2:
            return {}
        cost = [sum(self._cost[i] for i in b) for b in blocks]
        load = {a: 0.0 for a in addrs}
        out = {}
        for j in sorted(range(len(blocks)), key=lambda j: (-cost[j], j)):
            a = min(addrs, key=lambda k: (load[k], k))
            out[j] = [a]
            load[a] += cost[j]
        return out

    def _data(self, block):
        return self.dataset if self.stream else self._held[block]

    def _count(self, chunks, epoch, spec):
        futs = [self.client.submit(_count_task, self._data(b), spec, self.seed, epoch, c, self.ignore, self.K,
                                   key=f"mpf-count-{self.session}-{epoch}-{b}-{c[0]}", pure=False)
                for b, c in chunks]
        return np.sum(self._gather(futs), axis=0).astype(np.int64)

    def _gather(self, futs):
        try:
            return self.client.gather(futs)
        except (OSError, TimeoutError) as exc:
            raise self._lost(exc) from None

    def evaluate(self, x, indices, weights, epoch: int, grad: bool = True, augment: bool = True) -> Eval:
        spec = self.spec if augment else None
        chunks = self.chunks(indices)
        for attempt in range(self.retries + 1):
            try:
                return self._evaluate(x, chunks, weights, epoch, grad, spec)
            except Exception as exc:  # noqa: BLE001 - only Dask's "lost data" errors are retried
                if type(exc).__name__ not in _LOST or attempt == self.retries:
                    raise
                # a replica-less input was lost: the tasks are pure, so running the evaluation again is exact

    def _broadcast(self, vec):
        """Scatter the parameters to ``replicas`` workers (all of them when None); tasks elsewhere fetch them from
        a holder, and every worker that has them becomes one, so they spread as a tree instead of leaving the
        scheduler once per worker. Two replicas: a killed worker cannot take the only copy with it. A worker
        killed while receiving them breaks the scatter while the scheduler is fine: then scatter again (same
        vector, so exact); give up only when the scheduler is unreachable."""
        for attempt in range(self.retries + 1):  # the worker list is refreshed every 16 evaluations and on failure
            try:
                if self.replicas and (attempt or self._addrs is None or self.n_evals % 16 == 0):
                    self._addrs = sorted(self.client.scheduler_info(n_workers=-1)["workers"])
                addrs = self._addrs or []
                if not self.replicas or len(addrs) <= self.replicas:
                    return self.client.scatter(vec, broadcast=True, hash=False)
                k = self.n_evals % len(addrs)  # rotate the first holders over the workers
                chosen = [addrs[(k + j) % len(addrs)] for j in range(self.replicas)]
                return self.client.scatter(vec, workers=chosen, broadcast=True, hash=False)
            except Exception as exc:  # noqa: BLE001 - e.g. a chosen worker just left: refresh the list, scatter again
                if attempt == self.retries or not self._scheduler_alive():
                    raise self._lost(exc) from None
                time.sleep(0.5)

    def _lost(self, exc) -> ClusterError:
        """The error for a failed exchange: the scheduler gone, or up with no worker left."""
        try:
            workers = len(self.client.scheduler_info().get("workers", {})) if self._scheduler_alive() else None
        except Exception:  # noqa: BLE001 - the scheduler is unreachable too
            workers = None
        if workers == 0:
            return ClusterError(f"every Dask worker is gone (killed? out of memory?) while the scheduler still runs "
                                f"({type(exc).__name__}: {exc})")
        return ClusterError(f"lost the connection to the Dask scheduler ({type(exc).__name__}: {exc})")

    def _scheduler_alive(self) -> bool:
        try:
            self.client.ncores()
            return True
        except Exception:  # noqa: BLE001 - any failure to reach it means it is gone
            return False

    def _submit_chunks(self, keys, chunks, params, w, epoch, grad, spec, feed=False):
        """The chunk tasks, each with a worker (a loose restriction: another takes over when that one is gone):
        its block's worker unless that one already has more of this batch to do than another worker has (a
        mini-batch's chunks can all live on one worker), largest chunks first. Without restrictions Dask puts a
        task where its inputs are -- in stream mode, the two holders of the parameters. One `map` per worker,
        not one `submit` per task: fewer scheduler calls. With ``feed``, the fine tail's chunks are left to the
        returned `Feeder` (their futures None here). Placement never changes a result. Returns (futures,
        feeder)."""
        addrs = self._addrs or []
        load = {a: 0.0 for a in addrs}
        cost = [sum(self._cost[i] for i in c) for _, c in chunks]
        pool = [j for j, (b, _) in enumerate(chunks) if b in self._fine] if feed and len(addrs) > 1 else []
        feeder = Feeder(addrs, pool, {j: self._where.get(chunks[j][0]) for j in pool}, cost,
                        lambda j, a: self._map_chunks([keys[j]], [chunks[j]], a, params, w, epoch, grad, spec)[0])
        tail = set(pool)
        groups = {}
        for j in sorted(set(range(len(chunks))) - tail, key=lambda j: (-cost[j], j)):
            home = self._where.get(chunks[j][0])
            where = None
            if len(load) > 1:
                least = min(load, key=lambda a: (load[a], a))
                where = home if home in load and load[home] <= load[least] + 0.5 * cost[j] else least
                load[where] += cost[j]
            groups.setdefault(where, []).append(j)
        futs = [None] * len(chunks)
        for where, js in groups.items():
            for j, f in zip(js, self._map_chunks([keys[j] for j in js], [chunks[j] for j in js], where, params, w,
                                                  epoch, grad, spec)):
                futs[j] = f
                feeder.track(f.key, where)
        return futs, feeder

    def _map_chunks(self, keys, chunks, where, params, w, epoch, grad, spec):
        return self.client.map(_chunk_task, [self._data(b) for b, _ in chunks], [c for _, c in chunks], key=keys,
                               pure=False, workers=[where] if where else None, allow_other_workers=bool(where),
                               net=self.net, params=params, weights=w, spec=spec, seed=self.seed, epoch=epoch,
                               ignore_index=self.ignore, dtype=self.dtype, grad=grad)

    def _evaluate(self, x, chunks, weights, epoch, grad, spec):
        c = self.client
        t0 = time.perf_counter()
        self.n_evals += 1
        tag = f"{self.session}-{self.n_evals}"
        params = self._broadcast(np.asarray(x, np.float64))
        t_cast = time.perf_counter()
        w = None if weights is None else np.asarray(weights, np.float64)
        vec_bytes = 8 * (1 + 3 * self.K + (self.n if grad else 0))
        here = len(chunks) * vec_bytes <= DRIVER_REDUCE_BYTES
        level, feeder = self._submit_chunks([f"mpf-grad-{tag}-{b}-{ch[0]}" for b, ch in chunks], chunks, params, w,
                                            epoch, grad, spec, feed=here)
        if here:
            # small results: fetch each chunk's as it finishes (transfers overlap the computing) and run the same
            # fixed tree here -- the same additions in the same order, so the same bits, with no add tasks. The
            # fine tail goes out as workers run dry (`feed`).
            from distributed import as_completed
            for j, f in feeder.start():
                level[j] = f
            t_sub = time.perf_counter()
            got = {}
            try:
                ac = as_completed([f for f in level if f is not None], with_results=True)
                for fut, res in ac:
                    got[fut.key] = res
                    for j, f in feeder.done(fut.key):
                        level[j] = f
                        ac.add(f)
            except (OSError, TimeoutError) as exc:
                raise ClusterError(f"lost the connection to the Dask scheduler ({type(exc).__name__}: "
                                   f"{exc})") from None
            t_got = time.perf_counter()
            vec, sec, _, grad_end, _ = tree_sum([got[f.key] for f in level])
            reduce_end = now = time.time()
        else:
            for depth, groups in enumerate(tree_levels(len(level), FANIN), start=1):  # the fixed tree, block order
                nodes = [(a, b) for a, b in groups if b - a > 1]
                sums = iter(c.map(_add_list, [level[a:b] for a, b in nodes],
                                  key=[f"mpf-add-{tag}-{depth}-{a}" for a, _ in nodes], pure=False))
                level = [next(sums) if b - a > 1 else level[a] for a, b in groups]
            t_sub = time.perf_counter()
            vec, sec, _, grad_end, reduce_end = self._gather(level[0])
            t_got, now = time.perf_counter(), time.time()
        del level, params
        e = unpack(vec, self.K, grad, 0.0, sec, len(chunks), sum(len(ch) for _, ch in chunks))
        e.wall = time.perf_counter() - t0
        e.timing = {"broadcast": t_cast - t0, "driver": (t_sub - t_cast) + (e.wall - (t_got - t0)),
                    "reduction": max(0.0, reduce_end - grad_end) + max(0.0, now - reduce_end), "driver_reduce": here}
        return e

    def close(self):
        futs = list(self._held.values())
        self._held.clear()
        if futs:
            try:
                self.client.cancel(futs)
            except Exception:  # noqa: BLE001
                pass
