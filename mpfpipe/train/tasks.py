"""The pure functions the training tasks run on the workers: read a block of images, compute a chunk's summed
fragment results, count classes, and add packed results in the fixed order (see `oracle`)."""
from __future__ import annotations

import time

import numpy as np

from ..fragment import dense_loss_grad
from ..params import unravel
from .chunks import FANIN, tree_levels


def _load_block(dataset, indices):
    """The images of one hold block, normalised (not augmented), with their labels: what a worker keeps in
    persisted mode, as {index: (image, labels)}."""
    out = {}
    for i in indices:
        s = dataset.read(int(i), augment=None)
        out[int(i)] = (s.image, s.labels)
    return out


def _sample(data, spec, seed: int, epoch: int, index: int, ignore_index: int):
    """The (augmented) training sample: ``data`` is a held block {index: (image, labels)} or a Dataset."""
    from ..data import augment

    if isinstance(data, dict):
        image, labels = data[int(index)]
        if spec is not None:
            image, labels = augment(image, labels, spec, seed, epoch, index, ignore_index)
        return image, labels
    s = data.read(int(index), augment=spec, seed=seed, epoch=epoch)
    return s.image, s.labels


def _image_vec(net, data, p, weights, spec, seed, epoch, index, ignore_index, dtype, grad):
    """One image's packed float64 result [loss, class_loss, class_count, class_errors, gradient]."""
    image, labels = _sample(data, spec, seed, epoch, index, ignore_index)
    r = dense_loss_grad(net, p, image, labels, class_weights=weights, ignore_index=ignore_index,
                        dtype=np.dtype(dtype), grad=grad)
    head = np.concatenate([[r.loss], r.class_loss, r.class_count, r.class_errors]).astype(np.float64)
    return np.concatenate([head] + ([np.asarray(r.grad[name], np.float64).ravel() for name in p] if grad else []))


def _chunk_task(data, indices, net, params, weights, spec, seed, epoch, ignore_index, dtype, grad):
    """The summed packed results of a chunk's images, added in index order in float64, with timing:
    (vector, task seconds, start, end of the gradient work, end of the reduction so far) -- wall clock times."""
    t0, c0 = time.time(), time.perf_counter()
    p = unravel(net, params, dtype=np.dtype(dtype))
    vec = None
    for i in indices:
        v = _image_vec(net, data, p, weights, spec, seed, epoch, i, ignore_index, dtype, grad)
        if vec is None:
            vec = v
        else:
            vec += v
    t1 = time.time()
    return vec, time.perf_counter() - c0, t0, t1, t1


def _count_task(data, spec, seed, epoch, indices, ignore_index, n_classes):
    """Summed per-class pixel counts of a chunk's (augmented) labels."""
    from ..data import augment
    total = np.zeros(n_classes, np.int64)
    for i in indices:
        if isinstance(data, dict):
            _, labels = augment(None, data[int(i)][1], spec, seed, epoch, int(i), ignore_index)
        else:
            labels = data.read(int(i), augment=spec, seed=seed, epoch=epoch).labels
        total += np.bincount(np.asarray(labels).ravel(), minlength=256)[:n_classes]
    return total


def _add(*parts):
    """Sum of packed chunk results, left to right in float64 (exact order), with their timings combined."""
    vec = parts[0][0].copy()
    for p in parts[1:]:
        vec += p[0]
    return (vec, sum(p[1] for p in parts), min(p[2] for p in parts), max(p[3] for p in parts), time.time())


def _add_list(parts):
    return _add(*parts)


def tree_sum(items, add=_add, fanin: int = FANIN):
    """The fixed reduction tree over a list in order (serial reference of `DaskOracle`'s reduction): see
    `chunks.tree_levels`; a node with one child passes it on."""
    level = list(items)
    if not level:
        raise ValueError("nothing to reduce")
    for groups in tree_levels(len(level), fanin):
        level = [add(*level[a:b]) if b - a > 1 else level[a] for a, b in groups]
    return level[0]
