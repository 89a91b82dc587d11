"""Training a 3D net on a volume (mpfpipe.train.units): the units' gradients add up to each run's whole dense
gradient (float64), runs never read another split's sections, the augmentations by hand, and a few L-BFGS steps on
real ISBI sections give bit-identical weights on 1x1, 2x1 and 1x2 workers x threads (real LocalClusters)."""
import numpy as np
import pytest

from mpfpipe.arch import FC, Conv, Net, Pool
from mpfpipe.data import AugmentSpec, ingest, open_dataset
from mpfpipe.errors import TrainingError
from mpfpipe.fragment import dense_loss_grad
from mpfpipe.params import init_params
from mpfpipe.train import train
from mpfpipe.train.units import VolumeUnits

NET = Net((Conv((2, 3, 3), 3), Pool((1, 2, 2)), Conv((2, 2, 2), 3), Pool((2, 1, 1)), FC(4), FC(2, "linear")))


@pytest.fixture(scope="module")
def vol(tmp_path_factory):
    root = tmp_path_factory.mktemp("vol")
    rng = np.random.default_rng(7)
    np.save(root / "i.npy", rng.integers(0, 256, (9, 22, 19)).astype(np.uint8))
    np.save(root / "l.npy", (rng.random((9, 22, 19)) < 0.3).astype(np.uint8))
    return open_dataset(ingest([root / "i.npy", root / "l.npy"], root / "v.zarr", volume=True,
                               sections="train=0-3,6-8,val=4,test=5"))


def test_units_add_up_to_each_runs_dense_gradient(vol):
    units = VolumeUnits(vol, NET, (2, 8, 16))
    # per run, (z blocks) x 3 x 2: runs 0..3 and 6..8 have 2 z blocks, sections 4 and 5 one
    assert [u.run for u in units.units[:13]] == [(0, 4)] * 12 + [(6, 9)]
    assert units.split_sizes() == {"train": 12 + 12, "val": 6, "test": 6}
    p = {k: v.astype(np.float64) for k, v in init_params(NET, 1).items()}
    for r0, r1 in ((0, 4), (6, 9)):
        image, labels = vol.read_block(r0, r1)
        whole = dense_loss_grad(NET, p, image.astype(np.float64), labels, dtype=np.float64)
        parts = [dense_loss_grad(NET, p, s.image.astype(np.float64), s.labels, dtype=np.float64)
                 for s in (units.read(i) for i in units.split("train") if units.units[i].run == (r0, r1))]
        assert np.array_equal(sum(r.class_count for r in parts), whole.class_count)
        assert abs(sum(r.loss for r in parts) - whole.loss) <= 1e-10 * abs(whole.loss)
        for name in p:
            got = sum(r.grad[name] for r in parts)
            assert np.abs(got - whole.grad[name]).max() <= 1e-10 * np.abs(whole.grad[name]).max()


def test_a_unit_reads_its_run_only_and_labels_its_block(vol):
    units = VolumeUnits(vol, NET, (1, 22, 19))
    assert units.margin == (2, 3, 3)  # max(before, after) of the halos (1, 2), (2, 3), (2, 3): window 4x6x6
    (i,) = units.split("val")  # the one section 4: a run of its own, nothing of 3 or 5 is read
    s = units.read(i)
    image, labels = vol.read_block(4, 5)
    assert s.image.shape == (1, 1, 22, 19) and np.array_equal(s.image, image) and np.array_equal(s.labels, labels)
    s = units.read(units.split("train")[1])  # section 1 of run 0..3: sections 0..3 read, 1 labelled
    image, labels = vol.read_block(0, 4)
    assert np.array_equal(s.image, image) and (s.labels[[0, 2, 3]] == 255).all()
    assert np.array_equal(s.labels[1], labels[1])


def test_flips_turns_and_crops_by_hand(vol):
    units = VolumeUnits(vol, NET, (3, 12, 12))
    i = units.split("train")[0]
    plain = units.read(i)
    seed, epoch = 3, 5
    rng = np.random.default_rng([seed, epoch, i])
    fx, fy = rng.random(2) < 0.5
    quarter, fz = int(rng.integers(4)), bool(rng.random() < 0.5)
    want = plain.labels
    for axis, on in ((-1, fx), (-2, fy), (-3, fz)):
        want = np.flip(want, axis) if on else want
    got = units.read(i, augment=AugmentSpec(flip=True, rot90=False), seed=seed, epoch=epoch)
    assert np.array_equal(got.labels, want)
    assert np.array_equal(got.image[0], np.flip(plain.image[0], [a for a, on in ((2, fx), (1, fy), (0, fz)) if on]))
    turned = units.read(i, augment=AugmentSpec(flip=False, rot90=True), seed=seed, epoch=epoch)
    assert plain.labels.shape[1:] == (15, 15)  # the block's 12 x 12 plus the margin 3 after it: square, any turn
    assert np.array_equal(turned.labels, np.rot90(plain.labels, quarter, axes=(1, 2)))
    crop = units.read(i, augment=AugmentSpec(flip=False, rot90=False, crop=5), seed=seed, epoch=epoch)
    # a 3 x 5 x 5 box (the unit's 3 sections deep) somewhere in run 0..3, every voxel labelled in the source
    assert (crop.labels != 255).sum() == 3 * 5 * 5 and crop.labels.shape[0] == 4


def test_a_3d_net_needs_a_volume_dataset(tmp_path):
    np.save(tmp_path / "i.npy", np.zeros((3, 20, 20), np.uint8))
    np.save(tmp_path / "l.npy", np.ones((3, 20, 20), np.uint8))
    flat = ingest([tmp_path / "i.npy", tmp_path / "l.npy"], tmp_path / "f.zarr")
    with pytest.raises(TrainingError, match="3D net: it trains on a volume dataset"):
        train(flat, NET, out=tmp_path / "m.safetensors", workers=1, progress=False)


@pytest.fixture(scope="module")
def isbi_volume(shared_data, tmp_path_factory):
    """Six ISBI sections, cropped to 40 x 44, as a volume dataset (train 0-3, val 4-5)."""
    import tifffile
    root = tmp_path_factory.mktemp("isbi_vol")
    np.save(root / "i.npy", tifffile.imread(shared_data / "isbi2012" / "train-volume.tif")[:6, 200:240, 100:144])
    np.save(root / "l.npy", tifffile.imread(shared_data / "isbi2012" / "train-labels.tif")[:6, 200:240, 100:144])
    return ingest([root / "i.npy", root / "l.npy"], root / "v.zarr", positive=0, volume=True,
                  sections="train=0-3,val=4-5", voxel_size="50,4,4", voxel_unit="nanometer")


def test_weights_are_bit_identical_on_1x1_2x1_1x2_workers_threads(isbi_volume, tmp_path):
    xs = []
    for workers, threads in ((1, 1), (2, 1), (1, 2)):
        r = train(isbi_volume, NET, optimizer="lbfgs", epochs=3, seed=1, unit=(2, 24, 24),
                  augment={"flip": True, "rot90": True}, out=tmp_path / f"m{workers}{threads}.safetensors",
                  workers=workers, threads=threads, progress=False)
        assert len(r.records) == 3 and r.summary["unit"] == [2, 24, 24]
        assert "8 train / 4 val volume unit(s)" in r.text  # 4 and 2 sections of 40 x 44: 2 x 2 tiles each
        xs.append(r.x)
    assert np.isfinite(xs[0]).all() and np.array_equal(xs[0], xs[1]) and np.array_equal(xs[0], xs[2])
