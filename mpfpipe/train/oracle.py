"""The gradient oracle: (loss, gradient) of a batch of images, computed per image on Dask workers and reduced in
a fixed binary tree.

- Data. In *persisted* mode each image is read from Zarr (normalised, not augmented) by a worker once and kept
  there as a future; in *stream* mode (``stream=True``, chosen automatically when the data would not fit in the
  workers' memory) each task reads its own image from Zarr, so only the images of the current batch are ever
  loaded. Both modes run the same pure function on the same arrays, hence give the same results.
- Tasks. ``_grad_task(net, data, params, weights, spec, seed, epoch, index, dtype, grad)`` is a pure function of
  its arguments (augmentation is a pure function of (seed, epoch, index)), so Dask may run or re-run it on any
  worker: a lost worker's tasks are recomputed elsewhere with the same result.
- Reduction. Per-image results are packed into one float64 vector ``[loss, class_loss(K), class_count(K),
  class_errors(K), gradient(n)]`` and added pairwise, level by level, in image-index order: ((r0+r1)+(r2+r3))+...
  The tree's shape depends only on the batch, never on worker count or task placement, so the sum is
  bit-identical on any cluster (given the same threads per worker, see `cluster`).
- Parameters travel once per evaluation (``scatter(broadcast=True)``: every worker gets a replica, so a killed
  worker cannot take the only copy with it).
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import numpy as np

from ..errors import ClusterError
from ..fragment import dense_loss_grad
from ..params import n_params, unravel


# ------------------------------------------------------------------------------------ pure worker functions
def _load(dataset, index: int):
    """Image ``index`` normalised (not augmented) and its labels: what a worker keeps in persisted mode."""
    s = dataset.read(int(index), augment=None)
    return s.image, s.labels


def _sample(data, spec, seed: int, epoch: int, index: int, ignore_index: int):
    """The (augmented) training sample: ``data`` is a held (image, labels) pair or a Dataset to read from."""
    from ..data import augment

    if isinstance(data, tuple):
        image, labels = data
        if spec is not None:
            image, labels = augment(image, labels, spec, seed, epoch, index, ignore_index)
        return image, labels
    s = data.read(int(index), augment=spec, seed=seed, epoch=epoch)
    return s.image, s.labels


def _grad_task(net, data, params, weights, spec, seed, epoch, index, ignore_index, dtype, grad):
    t0 = time.perf_counter()
    image, labels = _sample(data, spec, seed, epoch, index, ignore_index)
    p = unravel(net, params, dtype=np.dtype(dtype))
    r = dense_loss_grad(net, p, image, labels, class_weights=weights, ignore_index=ignore_index,
                        dtype=np.dtype(dtype), grad=grad)
    head = np.concatenate([[r.loss], r.class_loss, r.class_count, r.class_errors]).astype(np.float64)
    vec = np.concatenate([head] + ([np.asarray(r.grad[name], np.float64).ravel() for name in p] if grad else []))
    return vec, time.perf_counter() - t0


def _count_task(data, spec, seed, epoch, index, ignore_index, n_classes):
    if isinstance(data, tuple):
        from ..data import augment
        _, labels = augment(None, data[1], spec, seed, epoch, index, ignore_index)
    else:
        labels = data.read(int(index), augment=spec, seed=seed, epoch=epoch).labels
    return np.bincount(np.asarray(labels).ravel(), minlength=256)[:n_classes].astype(np.int64)


def _add(a, b):
    """Sum of two packed results (vector, seconds); the vector sum is float64 and elementwise (exact order)."""
    return a[0] + b[0], a[1] + b[1]


def tree_sum(items, add=_add):
    """The fixed pairwise tree over a list in order (serial reference of `DaskOracle`'s reduction)."""
    level = list(items)
    if not level:
        raise ValueError("nothing to reduce")
    while len(level) > 1:
        nxt = [add(level[j], level[j + 1]) for j in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


# ------------------------------------------------------------------------------------------------ results
@dataclass
class Eval:
    """A reduced evaluation: ``loss`` = sum_images sum_c w_c L_c, ``grad`` (n,) float64 or None, per-class sums,
    wall seconds on the driver and summed task seconds on the workers."""
    loss: float
    grad: np.ndarray | None
    class_loss: np.ndarray
    class_count: np.ndarray
    class_errors: np.ndarray
    wall: float
    task_seconds: float
    n_tasks: int
    packed: np.ndarray  # the raw reduced vector (for bit-identity checks)

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


def unpack(vec: np.ndarray, K: int, grad: bool, wall=0.0, seconds=0.0, n_tasks=0) -> Eval:
    return Eval(loss=float(vec[0]), grad=vec[1 + 3 * K:].copy() if grad else None,
                class_loss=vec[1:1 + K].copy(), class_count=vec[1 + K:1 + 2 * K].astype(np.int64),
                class_errors=vec[1 + 2 * K:1 + 3 * K].astype(np.int64), wall=wall, task_seconds=seconds,
                n_tasks=n_tasks, packed=vec)


class BaseOracle:
    """Common interface: ``evaluate(x, indices, weights, epoch, grad, augment)`` and
    ``class_counts(indices, epoch, augment)`` (``augment=False``: the stored images, e.g. for validation)."""

    def __init__(self, net, dataset, *, augment=None, seed: int = 0, dtype="float32"):
        self.net = net
        self.dataset = dataset
        self.spec = augment if (augment is not None and augment.active) else None
        self.seed = int(seed)
        self.dtype = np.dtype(dtype).name
        self.K = net.n_classes
        self.n = n_params(net)
        self.ignore = int(dataset.ignore_index)
        self._counts = {}
        self.n_evals = 0

    def class_counts(self, indices, epoch: int, augment: bool = True) -> np.ndarray:
        """Global class counts of the (augmented) labels of a batch; cached per batch (and epoch if augmented)."""
        spec = self.spec if augment else None
        key = (tuple(int(i) for i in indices), int(epoch) if spec is not None else 0, spec is not None)
        if key not in self._counts:
            if len(self._counts) > 256:
                self._counts.clear()
            self._counts[key] = self._count(list(key[0]), key[1], spec)
        return self._counts[key]

    def close(self):
        pass


class LocalOracle(BaseOracle):
    """The same tasks and tree run serially in this process (reference for tests, and tiny jobs)."""

    def _count(self, indices, epoch, spec):
        return sum(_count_task(self.dataset, spec, self.seed, epoch, i, self.ignore, self.K) for i in indices)

    def evaluate(self, x, indices, weights, epoch: int, grad: bool = True, augment: bool = True) -> Eval:
        t0 = time.perf_counter()
        spec = self.spec if augment else None
        parts = [_grad_task(self.net, self.dataset, np.asarray(x, np.float64), weights, spec, self.seed,
                            epoch, i, self.ignore, self.dtype, grad) for i in indices]
        vec, sec = tree_sum(parts)
        self.n_evals += 1
        return unpack(vec, self.K, grad, time.perf_counter() - t0, sec, len(parts))


_LOST = ("CancelledError", "FutureCancelledError", "FuturesCancelledError", "KilledWorker", "CommClosedError")


class DaskOracle(BaseOracle):
    """Per-image tasks on a Dask cluster (see the module docstring)."""

    def __init__(self, client, net, dataset, *, augment=None, seed: int = 0, dtype="float32", stream=False,
                 retries: int = 3):
        super().__init__(net, dataset, augment=augment, seed=seed, dtype=dtype)
        self.client = client
        self.stream = bool(stream)
        self.retries = retries
        self.session = uuid.uuid4().hex[:8]
        self._held = {}  # index -> future of (image, labels)

    def hold(self, indices):
        """Persisted mode: have workers read these images once and keep them (no-op when streaming)."""
        if self.stream:
            return
        new = [int(i) for i in indices if int(i) not in self._held]
        place = self._placement(new)
        for i in new:
            self._held[i] = self.client.submit(_load, self.dataset, i, key=f"mpf-image-{self.session}-{i}",
                                               pure=False, workers=place.get(i),
                                               allow_other_workers=True if i in place else False)
        if new:  # surface read errors now, not in the middle of an iteration
            self.client.gather([self._held[i] for i in new], errors="raise")

    def _placement(self, indices) -> dict:
        """Spread the images over the workers by pixel count (largest first onto the least-loaded worker), so
        each worker computes about the same share of every full-batch evaluation. Only a preference: placement
        never changes a result, and a lost worker's images are re-read elsewhere."""
        try:
            addrs = sorted(self.client.scheduler_info(n_workers=-1)["workers"])
        except Exception:  # noqa: BLE001
            return {}
        if len(addrs) < 2:
            return {}
        load = {a: 0 for a in addrs}
        out = {}
        for i in sorted(indices, key=lambda j: (-self.dataset.sizes[j][0] * self.dataset.sizes[j][1], j)):
            a = min(addrs, key=lambda k: (load[k], k))
            out[i] = [a]
            load[a] += self.dataset.sizes[i][0] * self.dataset.sizes[i][1]
        return out

    def _data(self, i):
        return self._held.get(int(i), self.dataset) if not self.stream else self.dataset

    def _count(self, indices, epoch, spec):
        if not self.stream:
            self.hold(indices)
        futs = [self.client.submit(_count_task, self._data(i), spec, self.seed, epoch, int(i), self.ignore,
                                   self.K, key=f"mpf-count-{self.session}-{epoch}-{i}", pure=False)
                for i in indices]
        counts = self._gather(futs)
        return np.sum(counts, axis=0).astype(np.int64)

    def _gather(self, futs):
        try:
            return self.client.gather(futs)
        except (OSError, TimeoutError) as exc:
            raise self._lost(exc) from None

    def evaluate(self, x, indices, weights, epoch: int, grad: bool = True, augment: bool = True) -> Eval:
        if not self.stream:
            self.hold(indices)
        spec = self.spec if augment else None
        for attempt in range(self.retries + 1):
            try:
                return self._evaluate(x, indices, weights, epoch, grad, spec)
            except Exception as exc:  # noqa: BLE001 - only Dask's "lost data" errors are retried
                if type(exc).__name__ not in _LOST or attempt == self.retries:
                    raise
                # a replica-less input was lost: the tasks are pure, so running the evaluation again is exact

    def _broadcast(self, vec):
        """Scatter the parameters to every worker. A worker killed while receiving them breaks the scatter while
        the scheduler is fine: then scatter again (same vector, so exact); give up only when the scheduler is
        unreachable."""
        for attempt in range(self.retries + 1):
            try:
                return self.client.scatter(vec, broadcast=True, hash=False)
            except (OSError, TimeoutError) as exc:
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

    def _evaluate(self, x, indices, weights, epoch, grad, spec):
        c = self.client
        t0 = time.perf_counter()
        self.n_evals += 1
        tag = f"{self.session}-{self.n_evals}"
        params = self._broadcast(np.asarray(x, np.float64))
        w = None if weights is None else np.asarray(weights, np.float64)
        level = [c.submit(_grad_task, self.net, self._data(i), params, w, spec, self.seed, epoch, int(i),
                          self.ignore, self.dtype, grad, key=f"mpf-grad-{tag}-{i}", pure=False)
                 for i in indices]
        depth = 0
        while len(level) > 1:  # fixed pairwise tree in index order
            depth += 1
            nxt = [c.submit(_add, level[j], level[j + 1], key=f"mpf-add-{tag}-{depth}-{j // 2}", pure=False)
                   for j in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                nxt.append(level[-1])
            level = nxt
        vec, sec = self._gather(level[0])
        del level, params
        return unpack(vec, self.K, grad, time.perf_counter() - t0, sec, len(indices))

    def close(self):
        futs = list(self._held.values())
        self._held.clear()
        if futs:
            try:
                self.client.cancel(futs)
            except Exception:  # noqa: BLE001
                pass


STREAM_FRACTION = 0.25


def should_stream(dataset, indices, memory: int, fraction: float = STREAM_FRACTION) -> bool:
    """Stream from Zarr when holding the images would take more than ``fraction`` of the workers' total memory
    (the rest is left for activations: a gradient pass needs several times its image in float32 per layer)."""
    return bool(memory) and data_bytes(dataset, indices) > fraction * memory


def data_bytes(dataset, indices) -> int:
    """Bytes the held (normalised float32 + uint8 labels) images of ``indices`` take on the workers."""
    c = dataset.channels
    return int(sum(dataset.sizes[i][0] * dataset.sizes[i][1] * (4 * c + 1) for i in indices))
