"""The seeds of the instance step's watershed: scikit-image's ``feature.peak_local_max(image, min_distance=d,
exclude_border=False)``, the same peaks in the same order, with its spacing step as one linear-time kernel.

scikit-image 0.26 (``feature/peak.py``, ``_shared/coord.py``), for a 2-D image without labels or footprint:

1. candidates: the pixels equal to the maximum filter of size ``2 d + 1`` (mode "nearest") and above the image's
   minimum (none at all when every pixel equals its filtered value: a flat image has no peak);
2. ordered by decreasing value, ties in raster order (a stable sort of ``np.nonzero``'s order);
3. with ``d > 1``, ``ensure_spacing``: walking that order, a candidate is dropped when it lies at a Chebyshev
   distance below ``d`` from a candidate already kept (its batches and k-d tree give this greedy result).

Step 3 took a k-d tree query and a Python loop over the kept points (profiled: 3.0 ms of the 36 ms that one
576 x 576 ISBI block spends in `section_instances`).
Here it is a grid of ``d x d`` cells: two kept peaks are at least ``d`` apart, so a cell holds at most one, and
a candidate need only look at the 3 x 3 cells around its own.
"""
from __future__ import annotations

import numba
import numpy as np
from scipy import ndimage

from .. import _kernel_cache  # noqa: F401 - cache entries stamped with all kernel sources


@numba.njit(cache=True, nogil=True)
def _spaced(rows, cols, d, height, width):
    """Indices (into the ordered candidates ``rows``, ``cols``) of those kept by the greedy spacing of step 3."""
    gh, gw = height // d + 1, width // d + 1
    grid = np.full((gh, gw), -1, np.int64)  # the kept candidate in each d x d cell
    keep = np.empty(rows.size, np.int64)
    n = 0
    for i in range(rows.size):
        r, c = rows[i], cols[i]
        gr, gc = r // d, c // d
        near = False
        for a in range(max(gr - 1, 0), min(gr + 2, gh)):
            for b in range(max(gc - 1, 0), min(gc + 2, gw)):
                j = grid[a, b]
                if j >= 0 and abs(rows[j] - r) < d and abs(cols[j] - c) < d:
                    near = True
        if not near:
            grid[gr, gc] = i
            keep[n] = i
            n += 1
    return keep[:n]


def peak_local_max(image: np.ndarray, min_distance: int) -> np.ndarray:
    """(n, 2) int64 coordinates of ``skimage.feature.peak_local_max(image, min_distance=min_distance,
    exclude_border=False)`` of a 2-D image (``min_distance`` >= 1), in its order (module doc)."""
    image = np.asarray(image)
    d = int(min_distance)
    if d < 1 or image.ndim != 2:
        raise ValueError(f"peak_local_max: a 2-D image and min_distance >= 1 (got {image.ndim}-D, {min_distance})")
    if image.size <= 1:  # scikit-image: image > its own minimum, nowhere
        return np.zeros((0, 2), np.int64)
    is_max = image == ndimage.maximum_filter(image, size=2 * d + 1, mode="nearest")
    if is_max.all():
        return np.zeros((0, 2), np.int64)
    is_max &= image > image.min()
    rows, cols = np.nonzero(is_max)
    order = np.argsort(-image[rows, cols], kind="stable")
    rows, cols = rows[order].astype(np.int64), cols[order].astype(np.int64)
    if d > 1:
        kept = _spaced(rows, cols, d, image.shape[0], image.shape[1])
        rows, cols = rows[kept], cols[kept]
    return np.stack([rows, cols], axis=1)
