"""Training a 3D net on a volume dataset (issue 26): the volume seen as a list of *units*, each an output block
with its input halo, which the trainer treats as it treats the images of a 2D dataset.

Each split's sections form runs of consecutive sections (`mpfpipe.data.volumeset`); a run is a volume of its
own, mirrored at its ends in z (and at the section edges in y and x), so no section of another split is ever read
while training: the test sections stay unseen. A run is cut into output blocks of ``block`` (z, y, x) voxels (the
last ones smaller); unit i is block i of the runs of the train split, then of val, then of test, in grid order.
A unit's sample is its block's voxels labelled (everything else ``ignore``) inside the region the net's windows
need around them: ``m = max(before, after)`` more voxels per axis, clipped at the run's / section's edge, where the
dense pass mirrors exactly as it would mirror the whole run. So the loss and gradient of a unit are those of the
whole run restricted to its block, and their sum over a run's units is the whole run's (the float64 sum of the
oracle's fixed chunk tree). The margin is symmetric so that a flipped unit still has the context it needs.

Augmentation, a pure function of (seed, epoch, unit) as in 2D (`mpfpipe.data.augment`): ``flip`` flips x, y and
z (each with probability 1/2), ``rot90`` turns y-x by a random quarter (square regions; else by 0 or 180 degrees),
``crop=N``: the unit's labelled box becomes an (bz, N, N) box at a random place in its run (3D crops: a new place
every epoch), instead of its grid block. Drawn in a fixed order: flip x, flip y, quarter, flip z, crop z, y, x.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from ..data.layout import SPLIT_NAMES
from ..data.reader import Sample
from ..errors import DataError, TrainingError


@dataclass(frozen=True)
class Unit:
    split: str
    run: tuple   # [r0, r1): the run's sections
    z: tuple     # the block, in volume coordinates
    y: tuple
    x: tuple


def unit_margin(net) -> tuple:
    """Context per axis (z, y, x) around a unit's block: the larger of the window's before / after."""
    return tuple(max(h) for h in net.halo3)


class VolumeUnits:
    """A volume dataset as the trainer's list of units (see the module doc); the same attributes a `Dataset`
    offers the trainer (``sizes`` are the units' (z, y, x) region sizes, for the chunk plan's cost estimate)."""

    def __init__(self, dataset, net, block):
        if dataset.volume is None:
            raise TrainingError(f"{net.name} is a 3D net: it trains on a volume dataset (ingest the stack with "
                                f"--volume), and {dataset.path} holds separate images")
        if net.ndim != 3:
            raise TrainingError(f"{net.name} is a 2D net; it trains on the sections of {dataset.path} as images")
        self.ds, self.block, self.margin = dataset, tuple(int(b) for b in block), unit_margin(net)
        _, self.Y, self.X = dataset.volume["shape"]
        self.units, self._split = [], {}
        for name in SPLIT_NAMES:
            start = len(self.units)
            for r0, r1 in dataset.volume["z_runs"].get(name, []):
                # the run's blocks in grid (C) order, the last ones along an axis smaller
                axes = [[(a, min(a + b, hi)) for a in range(lo, hi, b)]
                        for (lo, hi), b in zip(((r0, r1), (0, self.Y), (0, self.X)), self.block)]
                self.units += [Unit(name, (r0, r1), z, y, x) for z, y, x in itertools.product(*axes)]
            self._split[name] = list(range(start, len(self.units)))
        for name in ("path", "attrs", "channels", "dtype", "class_names", "n_classes", "ignore_index",
                     "normalisation"):
            setattr(self, name, getattr(dataset, name))
        self.n_images = len(self.units)
        self.sizes = [self._region(u, u.z, u.y, u.x)[3] for u in self.units]

    def split(self, name: str) -> list[int]:
        parts = [p.strip() for p in str(name).split("+")]
        for p in parts:
            if p not in self._split:
                raise DataError(f"unknown split {p!r} of {self.path}; known: {', '.join(SPLIT_NAMES)}")
        idx = sorted(i for p in parts for i in self._split[p])
        if not idx:
            raise DataError(f"split {name!r} of {self.path} has no section")
        return idx

    def split_sizes(self) -> dict:
        return {name: len(idx) for name, idx in self._split.items()}

    def _region(self, u: Unit, zb, yb, xb):
        """Input slices (z, y, x) of a labelled box, its place inside them, and the region's shape."""
        lo_hi = ((u.run[0], u.run[1]), (0, self.Y), (0, self.X))
        outer, inner, shape = [], [], []
        for (a, b), (lo, hi), m in zip((zb, yb, xb), lo_hi, self.margin):
            o0, o1 = max(lo, a - m), min(hi, b + m)
            outer.append((o0, o1))
            inner.append(slice(a - o0, b - o0))
            shape.append(o1 - o0)
        return outer[0], outer[1], outer[2], tuple(shape), tuple(inner)

    def _box(self, i: int, spec, rng_draws):
        """The labelled box of unit i: its block, or with ``spec.crop`` a (bz, N, N) box at the drawn place."""
        u = self.units[i]
        if spec is None or not spec.crop:
            return u.z, u.y, u.x
        cz, cy, cx = rng_draws
        out = []
        for (lo, hi), size, frac in zip(((u.run[0], u.run[1]), (0, self.Y), (0, self.X)),
                                        (u.z[1] - u.z[0], spec.crop, spec.crop), (cz, cy, cx)):
            size = min(size, hi - lo)
            a = lo + int(frac * (hi - lo - size + 1))
            out.append((a, a + size))
        return tuple(out)

    def read(self, i, *, augment=None, seed: int = 0, epoch: int = 0, normalise: bool = True) -> Sample:
        """Unit i's sample: image (C, nz, h, w) float32 and labels (nz, h, w), augmented for (seed, epoch, i)."""
        from ..data import AugmentSpec
        if not isinstance(i, (int, np.integer)) or not 0 <= int(i) < self.n_images:
            raise DataError(f"unit {i!r} out of range 0..{self.n_images - 1} of {self.path}")
        i = int(i)
        spec = AugmentSpec.from_dict(augment) if isinstance(augment, dict) else augment
        spec = spec if spec is not None and spec.active else None
        rng = np.random.default_rng([int(seed), int(epoch), i])
        flip_x, flip_y = rng.random(2) < 0.5
        quarter = int(rng.integers(4))
        flip_z = bool(rng.random() < 0.5)
        box = self._box(i, spec, rng.random(3))
        zr, yr, xr, _, inner = self._region(self.units[i], *box)
        image, labels = self.ds.read_block(*zr, normalise=normalise)
        image = image[:, :, slice(*yr), slice(*xr)]
        cut = labels[:, slice(*yr), slice(*xr)]
        labels = np.full(cut.shape, self.ignore_index, np.uint8)
        labels[inner] = cut[inner]
        if spec is not None:
            image, labels = _geo(image, labels, spec, flip_x, flip_y, quarter, flip_z)
        return Sample(image=np.ascontiguousarray(image, np.float32), labels=np.ascontiguousarray(labels), index=i)

    def class_counts(self, indices=None, *, augment=None, seed: int = 0, epoch: int = 0) -> np.ndarray:
        """Voxels of each class in the units' labelled boxes (flips and turns do not change them; crops do)."""
        idx = range(self.n_images) if indices is None else indices
        total = np.zeros(self.n_classes, np.int64)
        for i in idx:
            lab = self.read(i, augment=augment, seed=seed, epoch=epoch).labels
            total += np.bincount(lab.ravel(), minlength=256)[: self.n_classes]
        return total


def _geo(image, labels, spec, flip_x, flip_y, quarter, flip_z):
    """Flips in x, y, z and quarter turns in y-x of (C, z, y, x) images and (z, y, x) labels."""
    for axis, on in ((-1, flip_x), (-2, flip_y), (-3, flip_z)):
        if spec.flip and on:
            image, labels = np.flip(image, axis), np.flip(labels, axis)
    if spec.rot90:
        k = quarter if labels.shape[-2] == labels.shape[-1] else 2 * (quarter // 2)
        image, labels = np.rot90(image, k, axes=(-2, -1)), np.rot90(labels, k, axes=(-2, -1))
    return image, labels
