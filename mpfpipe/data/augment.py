"""Deterministic on-the-fly augmentation: any augmented sample is a pure function of (seed, epoch, image index).

A worker reproduces a sample from those three integers, so augmented images never travel over the network and a
recomputed task gives the same gradient. The random numbers come from ``np.random.default_rng([seed, epoch,
index])`` and are always drawn in the same order (flip-x, flip-y, quarter turns, angle, gain, bias, crop position)
whatever the spec enables, so switching one transform on does not change the others.

Order of the transforms: flips, 90-degree rotations, arbitrary-angle rotation, intensity jitter, crop. The shape is
kept except by the crop: on a non-square image the quarter turns are limited to 0 and 180 degrees. The arbitrary
rotation turns about the image centre; the image is resampled bilinearly with mirrored borders, the labels with
nearest neighbour, and every output pixel whose source lies outside the image is labelled ``ignore_index``.

Crop (``crop`` = c > 0): a random c x c region (the whole side when the image is smaller) is the training target;
the image is cut out with ``margin`` more pixels of real context on every side (clipped at the image border) and
the labels of that margin are ``ignore_index``. With margin >= window // 2 every labelled pixel sees exactly the
window it has in the whole image (mirrored only where the whole image is mirrored too), so a crop's loss and
gradient are those of the whole image restricted to the crop: more, cheaper optimiser steps per second.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from ..errors import DataError
from .layout import IGNORE_INDEX

FLOAT_OPTIONS = ("jitter", "max_angle")   # the spec's valued options (the others are switches)
INT_OPTIONS = ("crop", "margin")


@dataclass(frozen=True)
class AugmentSpec:
    """Which augmentations to apply. ``jitter`` > 0 multiplies the (normalised) image by exp(jitter * N(0,1))
    and adds jitter * N(0,1); ``max_angle`` bounds the arbitrary rotation (degrees, uniform in +-max_angle)."""
    flip: bool = True
    rot90: bool = True
    rotate: bool = False
    jitter: float = 0.0
    max_angle: float = 180.0
    crop: int = 0            # side of the random training region (0: the whole image)
    margin: int = 0          # context kept around it (the trainer sets window // 2)

    def __post_init__(self):
        if not (np.isfinite(self.jitter) and self.jitter >= 0):
            raise DataError(f"augment jitter {self.jitter!r} must be a finite number >= 0")
        if not (np.isfinite(self.max_angle) and 0 <= self.max_angle <= 180):
            raise DataError(f"augment max_angle {self.max_angle!r} must be within 0..180 degrees")
        if self.crop < 0 or self.margin < 0 or int(self.crop) != self.crop or int(self.margin) != self.margin:
            raise DataError(f"augment crop {self.crop!r} / margin {self.margin!r} must be whole numbers >= 0")

    @property
    def active(self) -> bool:
        return bool(self.flip or self.rot90 or (self.rotate and self.max_angle > 0) or self.jitter > 0
                    or self.crop > 0)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> AugmentSpec | None:
        """The inverse of :meth:`to_dict`; ``None`` stays ``None`` (no augmentation)."""
        if d is None:
            return None
        if isinstance(d, AugmentSpec):
            return d
        if not isinstance(d, dict):
            raise DataError(f"augmentation spec {d!r} is not a mapping")
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise DataError(f"unknown augmentation option(s) {unknown}; known: {sorted(known)}")
        kw = {}
        for k, v in d.items():
            kw[k] = float(v) if k in FLOAT_OPTIONS else int(v) if k in INT_OPTIONS else bool(v)
        return cls(**kw)


def parse_augment(text):
    """'none' | 'flip,rot90,rotate,jitter=0.05,max_angle=30,crop=256' -> an AugmentSpec dict (None for none); a dict or
    None passes through. Raises DataError naming the bad part."""
    if text is None or isinstance(text, dict):
        return text
    text = str(text).strip().lower()
    if text in ("", "none", "off", "false"):
        return None
    spec = {"flip": False, "rot90": False, "rotate": False}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" in part:
            k, v = part.split("=", 1)
            k = k.strip()
            if k not in FLOAT_OPTIONS + INT_OPTIONS:
                raise DataError(f"unknown augmentation option {k!r} (jitter=, max_angle=, crop=, margin=)")
            try:
                spec[k] = int(v) if k in INT_OPTIONS else float(v)
            except ValueError:
                raise DataError(f"{part!r}: {k} needs a {'whole ' if k in INT_OPTIONS else ''}number") \
                    from None
        elif part in spec:
            spec[part] = True
        else:
            raise DataError(f"unknown augmentation {part!r}: flip, rot90, rotate, jitter=X, max_angle=D, crop=N")
    return spec


def _rotation(shape, angle_deg):
    """Matrix and offset for scipy.ndimage.affine_transform turning about the centre, and the mask of
    output pixels whose (nearest) source pixel is inside the image."""
    h, w = shape
    t = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    centre = np.array([(h - 1) / 2.0, (w - 1) / 2.0])
    offset = centre - rot @ centre
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    sy = rot[0, 0] * yy + rot[0, 1] * xx + offset[0]
    sx = rot[1, 0] * yy + rot[1, 1] * xx + offset[1]
    inside = (sy >= -0.5) & (sy < h - 0.5) & (sx >= -0.5) & (sx < w - 0.5)
    return rot, offset, inside


def augment(image, labels, spec: AugmentSpec | None, seed: int, epoch: int, index: int,
            ignore_index: int = IGNORE_INDEX):
    """Augment ``image`` (C, h, w) (float32 out; may be None) and ``labels`` (h, w) uint8 (may be None) the same
    way, as a pure function of (spec, seed, epoch, index). Returns ``(image, labels)``, of the input shapes unless
    ``spec.crop`` is set."""
    from scipy import ndimage

    if image is not None:
        image = np.asarray(image, dtype=np.float32)
        if image.ndim != 3:
            raise DataError(f"augment: image must be (C, h, w), got shape {image.shape}")
    if labels is not None:
        labels = np.asarray(labels)
    if spec is None or not spec.active:
        return image, labels
    shape = (image.shape[1:] if image is not None else labels.shape)
    if image is not None and labels is not None and labels.shape != shape:
        raise DataError(f"augment: labels {labels.shape} and image {image.shape} differ in size")
    rng = np.random.default_rng([int(seed), int(epoch), int(index)])
    flip_x, flip_y = rng.random(2) < 0.5
    quarter = int(rng.integers(4))
    angle = float(rng.uniform(-spec.max_angle, spec.max_angle))
    gain, bias = rng.standard_normal(2)
    cy, cx = rng.random(2)

    def geo(x, axes):  # flips and quarter turns on the last two axes
        ya, xa = axes
        if spec.flip and flip_x:
            x = np.flip(x, xa)
        if spec.flip and flip_y:
            x = np.flip(x, ya)
        if spec.rot90:
            k = quarter if shape[0] == shape[1] else 2 * (quarter // 2)
            x = np.rot90(x, k, axes=axes)
        return x

    if image is not None:
        image = geo(image, (1, 2))
    if labels is not None:
        labels = geo(labels, (0, 1))
    if spec.rotate and spec.max_angle > 0 and angle != 0.0:
        rot, offset, inside = _rotation(shape, angle)
        if image is not None:
            image = np.stack([ndimage.affine_transform(ch, rot, offset, order=1, mode="mirror")
                              for ch in image]).astype(np.float32, copy=False)
        if labels is not None:
            labels = ndimage.affine_transform(labels, rot, offset, order=0, mode="nearest")
            labels[~inside] = ignore_index
    if image is not None and spec.jitter > 0:
        image = image * np.float32(np.exp(spec.jitter * gain)) + np.float32(spec.jitter * bias)
    if spec.crop > 0:
        image, labels = _crop(image, labels, spec, cy, cx, ignore_index)
    if image is not None:
        image = np.ascontiguousarray(image, dtype=np.float32)
    if labels is not None:
        labels = np.ascontiguousarray(labels)
    return image, labels


def crop_window(shape, crop: int, margin: int, cy: float, cx: float):
    """(outer, inner) slices: the crop x crop target region at relative position (cy, cx) in [0, 1) and the region
    cut out around it (``margin`` more on every side, clipped to the image); inner is relative to outer."""
    outer, inner = [], []
    for n, u in zip(shape, (cy, cx)):
        c = min(int(crop), n)
        a = int(u * (n - c + 1))
        lo, hi = max(0, a - margin), min(n, a + c + margin)
        outer.append(slice(lo, hi))
        inner.append(slice(a - lo, a - lo + c))
    return tuple(outer), tuple(inner)


def _crop(image, labels, spec, cy, cx, ignore_index):
    shape = image.shape[1:] if image is not None else labels.shape
    outer, inner = crop_window(shape, spec.crop, spec.margin, cy, cx)
    if image is not None:
        image = image[(slice(None),) + outer]
    if labels is not None:
        cut = labels[outer]
        labels = np.full(cut.shape, ignore_index, dtype=labels.dtype)
        labels[inner] = cut[inner]
    return image, labels
