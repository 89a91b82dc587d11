"""Synthetic datasets for the quick start and for tests on a machine without the real data.

- :func:`synth_em`: EM-like slices. Cells are a warped random (Voronoi) tessellation; membranes are dark bands of
  varying thickness along the cell borders; organelles are dark blobs inside cells (hard negatives), plus cell
  texture, blur and noise. Classes: 0 = cell, 1 = membrane (the ISBI task).
- :func:`synth_defects`: textured surfaces with uneven illumination; most images defect-free, a
  ``defect_fraction`` of them with thin irregular cracks, scratches or small blow-holes. Classes: 0 = background,
  1 = defect (the steel / magnetic-tile task).

Both are seeded (same seed -> same bytes), take well under a second for the default sizes and write a dataset of
the standard layout (uint8 images) through the same atomic writer as ``ingest``.
"""
from __future__ import annotations

import numpy as np

from ..errors import DataError
from ..options import check as check_options
from ..values import parse_size
from .writer import Record, check_output, write_dataset


def _smooth_noise(rng, shape, sigma):
    from scipy import ndimage
    x = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return x / (x.std() + 1e-12)


def _to_uint8(x):
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def em_sample(rng, h: int, w: int, cell_size: float = 40.0):
    """One EM-like image (h, w) uint8 and its labels (1 = membrane, 0 = cell)."""
    from scipy import ndimage
    n_cells = max(4, int(round(h * w / cell_size ** 2)))
    seeds = np.ones((h, w), bool)
    seeds[rng.integers(0, h, n_cells), rng.integers(0, w, n_cells)] = False
    ids = np.zeros((h, w), np.int32)
    ids[~seeds] = np.arange(1, int((~seeds).sum()) + 1)
    _, (iy, ix) = ndimage.distance_transform_edt(seeds, return_indices=True)
    cells = ids[iy, ix]
    amp = cell_size / 8.0  # irregular borders: sample the tessellation at warped coordinates
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    wy = yy + amp * _smooth_noise(rng, (h, w), cell_size / 4)
    wx = xx + amp * _smooth_noise(rng, (h, w), cell_size / 4)
    cells = ndimage.map_coordinates(cells, [wy, wx], order=0, mode="nearest")
    border = np.zeros((h, w), bool)
    border[:-1] |= cells[:-1] != cells[1:]
    border[:, :-1] |= cells[:, :-1] != cells[:, 1:]
    dist = ndimage.distance_transform_edt(~border)
    half_width = 1.0 + 1.2 * (1.0 + np.tanh(_smooth_noise(rng, (h, w), cell_size / 3)))  # 1..3.4 px
    membrane = dist < half_width
    # intensities: bright cytoplasm per cell with texture, dark organelles, dark membranes
    level = rng.uniform(0.55, 0.8, cells.max() + 1)[cells]
    img = level + 0.04 * _smooth_noise(rng, (h, w), 2.0)
    pts = np.zeros((h, w))
    k = max(1, int(n_cells * 1.5))
    pts[rng.integers(0, h, k), rng.integers(0, w, k)] = 1.0
    blobs = ndimage.gaussian_filter(pts, cell_size / 10) * (2 * np.pi * (cell_size / 10) ** 2)
    organelles = (blobs > 0.45) & (dist > half_width + 2)
    img = np.where(organelles, rng.uniform(0.3, 0.42), img)
    img = np.where(membrane, 0.18 + 0.05 * _smooth_noise(rng, (h, w), 4.0), img)
    img = ndimage.gaussian_filter(img, 1.0) + 0.035 * rng.standard_normal((h, w))
    return _to_uint8(img), membrane.astype(np.uint8)


def _draw_path(rng, h, w, length, step=1.5, turn=0.35):
    """Pixels of a random-walk curve (a crack or scratch)."""
    y, x = rng.uniform(0.15 * h, 0.85 * h), rng.uniform(0.15 * w, 0.85 * w)
    ang = rng.uniform(0, 2 * np.pi)
    out = np.zeros((h, w), bool)
    for _ in range(int(length / step)):
        ang += turn * rng.standard_normal()
        y, x = y + step * np.sin(ang), x + step * np.cos(ang)
        if not (0 <= y < h and 0 <= x < w):
            break
        out[int(y), int(x)] = True
    return out


def defect_sample(rng, h: int, w: int, defective: bool):
    """One textured surface (h, w) uint8 and its labels (1 = defect); defect-free when not ``defective``."""
    from scipy import ndimage
    tex = (0.05 * _smooth_noise(rng, (h, w), 0.8) + 0.05 * _smooth_noise(rng, (h, w), 3.0)
           + 0.04 * _smooth_noise(rng, (h, w), 10.0))
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w], float).reshape(2, 1, 1)
    gy, gx = rng.uniform(-0.2, 0.2, 2)
    cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.3, 0.8)
    light = 0.5 + gy * (yy - 0.5) + gx * (xx - 0.5) + 0.15 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / r ** 2)
    img = light + tex
    defect = np.zeros((h, w), bool)
    if defective:
        kind = rng.integers(3)
        if kind == 0:    # crack: thin, wandering, dark
            defect = ndimage.binary_dilation(_draw_path(rng, h, w, rng.uniform(0.3, 0.8) * max(h, w)),
                                             iterations=int(rng.integers(0, 2)))
        elif kind == 1:  # scratch: long, nearly straight, thin
            defect = _draw_path(rng, h, w, rng.uniform(0.5, 1.0) * max(h, w), step=1.0, turn=0.05)
        else:            # blow-hole: small irregular dark blob
            pts = np.zeros((h, w))
            cy, cx = rng.integers(h // 6, h - h // 6), rng.integers(w // 6, w - w // 6)
            pts[np.clip(cy + rng.integers(-4, 5, 6), 0, h - 1), np.clip(cx + rng.integers(-4, 5, 6), 0, w - 1)] = 1
            defect = ndimage.gaussian_filter(pts, rng.uniform(2.0, 4.0)) > 0.01
        if not defect.any():
            defect[h // 2, w // 4: 3 * w // 4] = True
        depth = rng.uniform(0.18, 0.3)
        img = img - depth * np.clip(ndimage.gaussian_filter(defect.astype(float), 0.6) * 1.5, 0, 1)
    img = img + 0.02 * rng.standard_normal((h, w))
    return _to_uint8(img), defect.astype(np.uint8)


def _write(output, kind, gen, n_images, sizes, seed, split, overwrite, progress, class_names, options):
    check_output(output, overwrite)
    if not isinstance(n_images, (int, np.integer)) or n_images < 1:
        raise DataError(f"n_images {n_images!r} must be an integer >= 1")

    def records():
        for i, (h, w) in enumerate(sizes):
            img, lab = gen(np.random.default_rng([int(seed), i]), i, h, w)
            yield Record(name=f"{kind}_{i:04d}", group=f"synthetic:{kind}", image=img[None], labels=lab)

    provenance = {"sources": [f"synthetic:{kind}"], "layout": "synthetic",
                  "options": {**options, "n_images": int(n_images), "seed": int(seed),
                              "split": list(split) if split is not None else None}}
    return write_dataset(output, records(), n=int(n_images), channels=1, dtype=np.uint8,
                         hmax=max(h for h, _ in sizes), wmax=max(w for _, w in sizes), class_names=class_names,
                         label_mapping={"mode": "identity"}, split=split, seed=seed, provenance=provenance,
                         overwrite=overwrite, progress=progress)


def synth_em(output, n_images: int = 8, size=(256, 256), seed: int = 0, split=None, overwrite: bool = False,
             progress: bool = False, cell_size: float = 40.0):
    """Write an EM-like dataset (classes cell, membrane) of ``n_images`` images of ``size`` (h, w)."""
    check_options("synth_em", locals())
    h, w = parse_size(size)

    def gen(rng, i, hh, ww):
        return em_sample(rng, hh, ww, cell_size)
    return _write(output, "em", gen, n_images, [(h, w)] * max(int(n_images), 0), seed, split, overwrite,
                  progress, ["cell", "membrane"], {"size": [h, w], "cell_size": cell_size})


def synth_defects(output, n_images: int = 16, size=(128, 128), defect_fraction: float = 0.3, seed: int = 0,
                  split=None, overwrite: bool = False, progress: bool = False, variable_size: bool = False):
    """Write a surface-defect dataset (classes background, defect): ``round(defect_fraction * n_images)``
    images (at least one when the fraction is > 0) hold a defect, at seeded positions. With ``variable_size``
    each image's height and width are drawn between half and all of ``size``."""
    check_options("synth_defects", locals())
    h, w = parse_size(size)
    if not 0.0 <= defect_fraction <= 1.0:
        raise DataError(f"defect_fraction {defect_fraction!r} must be within 0..1")
    n = max(int(n_images), 0) if isinstance(n_images, (int, np.integer)) else 0
    rng = np.random.default_rng([int(seed), 0xDEF])
    n_def = min(n, max(1 if defect_fraction > 0 else 0, int(round(defect_fraction * n))))
    defective = np.zeros(n, bool)
    defective[rng.permutation(n)[:n_def]] = True
    if variable_size:
        sizes = [(int(rng.integers(h // 2, h + 1)), int(rng.integers(w // 2, w + 1))) for _ in range(n)]
    else:
        sizes = [(h, w)] * n

    def gen(r, i, hh, ww):
        return defect_sample(r, hh, ww, bool(defective[i]))
    return _write(output, "defects", gen, n_images, sizes, seed, split, overwrite, progress,
                  ["background", "defect"], {"size": [h, w], "defect_fraction": defect_fraction,
                                             "variable_size": variable_size})
