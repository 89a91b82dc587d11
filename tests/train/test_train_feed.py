"""The fine tail handed out as workers run dry (train.feed): the dispatch rules, and on real LocalClusters the
same bits as the serial reference whatever worker ran which tail chunk."""
from __future__ import annotations

import numpy as np
import pytest

from mpfpipe.train.feed import Feeder


class _Fut:
    def __init__(self, key):
        self.key = key


def _feeder(pool, home, cost, workers=("a", "b"), depth=2):
    log = []

    def submit(j, w):
        log.append((j, w))
        return _Fut(f"k{j}")
    return Feeder(list(workers), pool, home, cost, submit, depth), log


def test_a_worker_gets_its_own_tail_first_then_the_smallest_of_the_busiest():
    cost = {0: 1.0, 1: 1.0, 2: 0.5, 3: 0.25, 4: 0.5, 5: 0.25}
    home = {2: "a", 3: "a", 4: "b", 5: "b"}
    f, log = _feeder([2, 3, 4, 5], home, cost)
    f.track("k0", "a")  # the body: one chunk up front on each worker
    f.track("k1", "b")
    f.start()
    assert log == [(2, "a"), (4, "b")]  # each filled to depth 2 with its own largest tail chunk
    f.done("k0")
    assert log[-1] == (3, "a")
    f.done("k2")  # a has nothing of its own left: it takes b's smallest
    assert log[-1] == (5, "a") and f.remaining == 0
    assert f.done("k1") == [] and f.done("unknown") == []


def test_every_tail_chunk_goes_out_once_and_orphans_too():
    cost = {j: 1.0 for j in range(9)}
    home = {j: ("a" if j % 2 else "gone") for j in range(9)}
    f, log = _feeder(list(range(9)), home, cost, workers=("a", "b", "c"))
    done = [fut.key for _, fut in f.start()]
    while done:
        done += [fut.key for _, fut in f.done(done.pop(0))]
    assert sorted(j for j, _ in log) == list(range(9)) and f.remaining == 0
    assert {w for _, w in log} == {"a", "b", "c"}


@pytest.mark.slow
def test_fine_tail_on_2_and_3_workers_gives_the_serial_bits(tmp_path, small_net, make_cluster):
    from mpfpipe.data import AugmentSpec, open_dataset, synth_em
    from mpfpipe.params import init_params, ravel
    from mpfpipe.train import DaskOracle, LocalOracle, class_weights
    from mpfpipe.train.chunks import image_cost

    ds = open_dataset(synth_em(tmp_path / "d.zarr", n_images=24, size=(24, 20), seed=2))
    idx = ds.split("all")
    target = 3.2 * image_cost(small_net, 24, 20)  # 24 images of equal cost: 8 chunks of 3, the last cut in 3
    spec = AugmentSpec(flip=True, rot90=True)
    x = ravel(small_net, init_params(small_net, 4))
    local = LocalOracle(small_net, ds, augment=spec, seed=1, chunk_seconds=target)
    w = class_weights(local.class_counts(idx, 0), True)
    ref = local.evaluate(x, idx, w, 0, grad=True)
    assert [len(c) for _, c in local.chunks(idx)] == [3] * 7 + [1] * 3
    for workers in (2, 3):
        with make_cluster(workers, threads=1) as h:
            for stream in (False, True):
                o = DaskOracle(h.client, small_net, ds, augment=spec, seed=1, chunk_seconds=target, stream=stream)
                for _ in range(2):
                    e = o.evaluate(x, idx, w, 0, grad=True)
                    assert e.n_tasks == 10 and np.array_equal(e.packed, ref.packed)
                o.close()
