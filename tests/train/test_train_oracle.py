"""The gradient oracle on real LocalClusters: bit-identical reduced gradients and final weights for 1, 2 and 3
workers (one thread each), held vs streamed data, and agreement with the serial reference."""
from __future__ import annotations

import numpy as np
import pytest

from mpfpipe.data import AugmentSpec, open_dataset
from mpfpipe.params import init_params, ravel
from mpfpipe.train import DaskOracle, LocalOracle, class_weights, train, tree_sum
from mpfpipe.train.tasks import _add


def test_tree_sum_is_the_fixed_fanin_tree():
    """20 leaves, fan-in 8: (0..7), (8..15), (16..19) left to right, then the three sums."""
    leaves = [(np.array([float(i)]), 1.0, 0.0, 0.0, 0.0) for i in range(20)]
    seen = []

    def add(*parts):
        seen.append(tuple(p[0][0] for p in parts))
        return _add(*parts)
    vec, seconds = tree_sum(leaves, add, fanin=8)[:2]
    assert vec[0] == 190.0 and seconds == 20.0
    assert seen == [tuple(range(8)), tuple(range(8, 16)), (16, 17, 18, 19), (28.0, 92.0, 70.0)]
    assert tree_sum(leaves[:1], add)[0][0] == 0.0  # a lone leaf is passed on


def test_add_sums_left_to_right_in_float64():
    """The order is observable in float64: (1e16 + 1) + 1 != 1e16 + (1 + 1)."""
    parts = [(np.array([v]), 0.0, 0.0, 0.0, 0.0) for v in (1e16, 1.0, 1.0)]
    assert _add(*parts)[0][0] == (1e16 + 1.0) + 1.0 == 1e16
    assert _add(parts[1], parts[2], parts[0])[0][0] == 1e16 + 2.0


def _reference(net, ds_path, x, idx, w, epoch, spec):
    ds = open_dataset(ds_path)
    return LocalOracle(net, ds, augment=spec, seed=3).evaluate(x, idx, w, epoch, grad=True)


@pytest.mark.slow
def test_bit_identical_for_1_2_3_workers(isbi_crops, small_net, tmp_path, make_cluster):
    ds = open_dataset(isbi_crops)
    idx = ds.split("all")  # 7 images: an odd count exercises the carried leaf of the tree
    x0 = ravel(small_net, init_params(small_net, 1))
    spec = AugmentSpec(flip=True, rot90=True)
    packed, finals = {}, {}
    for workers in (1, 2, 3):
        with make_cluster(workers, threads=1) as h:
            assert len(h.worker_pids()) == workers
            oracle = DaskOracle(h.client, small_net, ds, augment=spec, seed=3)
            counts = oracle.class_counts(idx, epoch=2)
            assert np.array_equal(counts, ds.class_counts(idx, augment=spec, seed=3, epoch=2))
            w = class_weights(counts, True)
            e = oracle.evaluate(x0, idx, w, epoch=2, grad=True)
            packed[workers] = e.packed
            if workers == 2:  # streamed from Zarr by each task: the same bits
                s = DaskOracle(h.client, small_net, ds, augment=spec, seed=3, stream=True)
                assert np.array_equal(s.evaluate(x0, idx, w, epoch=2, grad=True).packed, e.packed)
                ref = _reference(small_net, isbi_crops, x0, idx, w, 2, spec)  # serial, this process's threads
                assert np.array_equal(ref.packed, e.packed)
            oracle.close()
            r = train(isbi_crops, small_net, optimizer="lbfgs", epochs=3, out=tmp_path / f"w{workers}.safetensors",
                      client=h.client, progress=False, seed=1)
            finals[workers] = r.x
    assert np.array_equal(packed[1], packed[2]) and np.array_equal(packed[1], packed[3])
    assert np.array_equal(finals[1], finals[2]) and np.array_equal(finals[1], finals[3])
    assert not np.array_equal(finals[1], x0)


def test_streamed_sgd_equals_held_sgd(isbi_crops, small_net, cluster2, tmp_path):
    common = dict(optimizer="sgd", epochs=1, batch_size=2, seed=6, client=cluster2.client, progress=False)
    held = train(isbi_crops, small_net, out=tmp_path / "h.safetensors", stream=False, **common)
    streamed = train(isbi_crops, small_net, out=tmp_path / "s.safetensors", stream=True, **common)
    assert streamed.summary["stream"] and not held.summary["stream"]
    assert np.array_equal(held.x, streamed.x)


def test_stream_is_chosen_when_data_exceed_memory(isbi_crops):
    from mpfpipe.train.settings import data_bytes, should_stream
    ds = open_dataset(isbi_crops)
    need = data_bytes(ds, ds.split("all"))
    assert need == 7 * 48 * 48 * 5
    assert should_stream(ds, ds.split("all"), memory=need)  # would take 100 % > 25 %
    assert not should_stream(ds, ds.split("all"), memory=8 * need)
    assert not should_stream(ds, ds.split("all"), memory=0)  # unknown / unlimited


def test_gemm_kernels_run_on_workers(isbi_crops, tmp_path, make_cluster):
    """A net with a wide layer (C_in * C_out > DIRECT_MAX) takes the GEMM (tap) path, whose kernels call BLAS
    through kernels._blas inside the worker: that path must work there and give the serial oracle's result."""
    from mpfpipe.arch import preset
    from mpfpipe.kernels._conv import use_direct
    net = preset("steel", maps=12, hidden=6)
    assert not use_direct(12, 12, 5)
    ds = open_dataset(isbi_crops)
    idx = ds.split("all")[:3]
    x0 = ravel(net, init_params(net, 2))
    with make_cluster(1, threads=1) as h:
        oracle = DaskOracle(h.client, net, ds, seed=0)
        e = oracle.evaluate(x0, idx, None, epoch=0, grad=True)
        oracle.close()
    ref = _reference(net, isbi_crops, x0, idx, None, 0, None)
    np.testing.assert_allclose(ref.packed, e.packed, rtol=1e-5, atol=1e-7)


def test_balanced_error_is_the_mean_per_class_error_rate():
    from mpfpipe.train.oracle import unpack
    K = 3
    vec = np.zeros(1 + 3 * K)
    vec[1 + K:1 + 2 * K] = [1000, 10, 0]        # pixels per class (class 2 absent)
    vec[1 + 2 * K:1 + 3 * K] = [10, 5, 0]       # errors per class
    e = unpack(vec, K, grad=False)
    assert e.pixel_error == pytest.approx(15 / 1010)
    assert e.balanced_error == pytest.approx((10 / 1000 + 5 / 10) / 2)


@pytest.mark.parametrize("crop", [13, 20])
def test_crop_gradient_is_the_whole_image_gradient_on_the_crop(crop, small_net):
    """Training on a crop (margin set by the trainer from the window) gives exactly the loss and gradient of the
    whole image with only the crop's pixels labelled (float64), wherever the crop falls, borders included."""
    from mpfpipe.data import IGNORE_INDEX, augment
    from mpfpipe.fragment import dense_loss_grad
    from mpfpipe.params import init_params
    from mpfpipe.train.settings import augment_spec as _augment_spec

    rng = np.random.default_rng(0)
    image = rng.standard_normal((1, 90, 77)).astype(np.float32).astype(np.float64)  # survives augment
    labels = (rng.random((90, 77)) < 0.3).astype(np.uint8)
    spec = _augment_spec({"flip": False, "rot90": False, "crop": crop}, small_net)
    assert spec.margin == small_net.window // 2
    p = init_params(small_net, 3, dtype=np.float64)
    w = np.array([0.3, 0.7])
    for index in range(6):
        ci, cl = augment(image, labels, spec, 0, 0, index)
        assert ci.shape[1] < 90 and ci.shape[2] < 77  # a real cut-out
        y0, x0 = np.argwhere(image[0] == ci[0, 0, 0])[0]  # where the cut-out lies (values are unique)
        assert np.array_equal(ci, image[:, y0:y0 + ci.shape[1], x0:x0 + ci.shape[2]])
        masked = np.full_like(labels, IGNORE_INDEX)
        masked[y0:y0 + ci.shape[1], x0:x0 + ci.shape[2]] = cl
        a = dense_loss_grad(small_net, p, ci.astype(np.float64), cl, class_weights=w, dtype=np.float64)
        b = dense_loss_grad(small_net, p, image, masked, class_weights=w, dtype=np.float64)
        assert a.class_count.tolist() == b.class_count.tolist() and a.class_count.sum() == crop * crop
        assert a.loss == pytest.approx(b.loss, rel=1e-12)
        for name in a.grad:
            np.testing.assert_allclose(a.grad[name], b.grad[name], rtol=0, atol=1e-12 * np.abs(b.grad[name]).max())
