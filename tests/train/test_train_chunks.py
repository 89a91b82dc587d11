"""The chunk plan (a pure function of the batch) and bit-identical training on any cluster at the full-size
presets (steel, n3, n4) on small images: 1, 2 and 3 worker processes, 1 or 2 threads per worker."""
from __future__ import annotations

import numpy as np
import pytest

from mpfpipe.train.chunks import image_cost, nice_count, plan_chunks, tree_levels


def test_nice_count_is_the_power_of_two_at_least_n():
    assert [nice_count(n) for n in range(1, 18)] == [1, 2, 4, 4, 8, 8, 8, 8, 16, 16, 16, 16, 16, 16, 16, 16, 32]
    assert nice_count(0.2) == 1 and nice_count(97.5) == 128


def test_plan_splits_equal_images_into_equal_consecutive_chunks():
    idx = list(range(3, 259))  # 256 images
    chunks = plan_chunks(idx, [0.0136] * 256)  # 3.48 s: 8 chunks of ~0.5 s, but 16 of >= 0.2 s spread it wider
    assert [len(c) for c in chunks] == [16] * 14 + [4] * 8  # the last 16 / 8 = 2 cut in 4: the fine tail
    assert chunks.fine == 8
    assert sum(chunks, []) == idx
    big = plan_chunks(list(range(4096)), [0.0119] * 4096)  # 48.7 s / 0.5: 128 chunks, the last 2 cut in 4
    assert [len(c) for c in big] == [32] * 126 + [8] * 8 and big.fine == 8
    assert len(plan_chunks(list(range(32)), [0.0136] * 32)) == 2  # 0.44 s: two chunks of 0.22 s
    assert len(plan_chunks(list(range(32)), [0.0136] * 32, spread=1)) == 1


def test_plan_follows_costs_and_keeps_one_image_per_chunk_at_least():
    chunks = plan_chunks(list(range(10)), [10.0] + [1.0] * 9, target=4.0, floor=4.0)  # 19 -> 4.75 -> 8 chunks
    assert chunks == [[0], [1], [2], [3], [4], [5], [6, 7], [8], [9]]  # the big image alone; [8, 9] the tail
    assert chunks.fine == 2
    three = plan_chunks(list(range(3)), [1.0] * 3, target=1.0)  # under 4 chunks: no fine tail
    assert three == [[0], [1], [2]] and three.fine == 0
    assert plan_chunks([5, 9], [100.0, 100.0], target=1.0) == [[5], [9]]  # never more chunks than images
    assert plan_chunks([4, 7, 8], [1e-3] * 3) == [[4, 7, 8]]
    assert plan_chunks([], []) == []
    with pytest.raises(ValueError):
        plan_chunks([3, 2], [1.0, 1.0])


def test_image_cost_grows_with_pixels_and_net():
    from mpfpipe.arch import load_net
    steel, n4 = load_net("steel"), load_net("n4")
    assert image_cost(steel, 100, 100) < image_cost(steel, 200, 200) < image_cost(n4, 200, 200)
    assert image_cost(steel, 100, 100, "infer") < image_cost(steel, 100, 100, "train")


def test_tree_levels():
    assert tree_levels(1) == []
    assert tree_levels(16) == [[(0, 16)]]
    assert tree_levels(20) == [[(0, 16), (16, 20)], [(0, 2)]]
    assert tree_levels(20, fanin=8) == [[(0, 8), (8, 16), (16, 20)], [(0, 3)]]
    assert len(tree_levels(256)) == 2 and len(tree_levels(257)) == 3


# ------------------------------------------------------------------------ full-size presets on real clusters
PRESETS = [("steel", 6, (30, 26)), ("n3", 4, (18, 17)), ("n4", 4, (17, 16))]


@pytest.fixture(scope="module")
def tiny_em(tmp_path_factory):
    from mpfpipe.data import synth_em
    root = tmp_path_factory.mktemp("tiny_em")
    return {name: synth_em(root / f"{name}.zarr", n_images=n, size=size, seed=5, split=(0.75, 0.25))
            for name, n, size in PRESETS}


def _run(client, name, path, tmp_path, tag):
    """One evaluation's packed vector and the weights after one L-BFGS epoch (every image its own chunk)."""
    from mpfpipe.arch import load_net
    from mpfpipe.data import open_dataset
    from mpfpipe.params import init_params, ravel
    from mpfpipe.train import DaskOracle, class_weights, train
    ds = open_dataset(path)
    net = load_net(name, in_channels=ds.channels, n_classes=ds.n_classes)
    idx = ds.split("all")
    oracle = DaskOracle(client, net, ds, seed=0, chunk_seconds=1e-9)
    w = class_weights(oracle.class_counts(idx, 0), True)
    packed = oracle.evaluate(ravel(net, init_params(net, 0)), idx, w, 0, grad=True).packed
    assert oracle.chunks(idx) == [(j, [i]) for j, i in enumerate(idx)]
    oracle.close()
    r = train(path, name, optimizer="lbfgs", epochs=1, out=tmp_path / f"{name}-{tag}.safetensors", client=client,
              progress=False, chunk_seconds=1e-9)
    return packed, r.x


@pytest.mark.slow
def test_full_size_presets_bit_identical_on_any_cluster(tiny_em, make_cluster, tmp_path):
    from mpfpipe.arch import load_net
    from mpfpipe.data import open_dataset
    from mpfpipe.params import init_params, ravel
    from mpfpipe.train import LocalOracle, class_weights

    results = {}
    for workers, threads in ((2, 1), (3, 1), (1, 2)):
        with make_cluster(workers, threads=threads) as h:
            assert len(h.worker_pids()) == workers
            assert h.client.run(lambda: int(__import__("os").environ["MPFPIPE_THREADS"])) == {
                a: threads for a in h.worker_pids()}
            for name, _, _ in PRESETS:
                results[name, workers, threads] = _run(h.client, name, tiny_em[name], tmp_path, f"{workers}x{threads}")
    for name, _, _ in PRESETS:
        ds = open_dataset(tiny_em[name])
        net = load_net(name, in_channels=ds.channels, n_classes=ds.n_classes)
        idx = ds.split("all")
        local = LocalOracle(net, ds, seed=0, chunk_seconds=1e-9)  # serial, in this process, its own threads
        ref = local.evaluate(ravel(net, init_params(net, 0)), idx, class_weights(local.class_counts(idx, 0), True),
                             0, grad=True).packed
        runs = [v for k, v in results.items() if k[0] == name]
        for packed, x in runs:
            assert np.array_equal(packed, ref), name
            assert np.array_equal(x, runs[0][1]), name
        assert not np.array_equal(runs[0][1], ravel(net, init_params(net, 0)))  # it did train


@pytest.mark.parametrize("version", [1, 2])
def test_a_checkpoint_from_an_older_summation_order_is_refused(tmp_path, version):
    """Version 1 checkpoints summed per-image results pairwise, version 2 chunks without the fine tail: resuming
    them would not be bit-identical."""
    import json

    from mpfpipe.data import synth_em
    from mpfpipe.errors import TrainingError
    from mpfpipe.train import train
    ds = synth_em(tmp_path / "d.zarr", n_images=2, size=(32, 32))
    meta = {"format": "mpfpipe-checkpoint", "version": version, "config": {}}
    np.savez(tmp_path / "m.ckpt.npz", a_x=np.zeros(3), __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    with pytest.raises(TrainingError,
                       match=rf"older mpfpipe \(checkpoint version {version}.*cannot continue bit-identically"):
        train(ds, "steel", out=tmp_path / "m.safetensors", resume=True, progress=False)
