"""The border thinning of the ISBI 2012 evaluation: Soille & Vincent's watershed by flooding simulation, exactly as
Fiji's Trainable Segmentation runs it (github fiji/Trainable_Segmentation,
``src/main/java/trainableSegmentation/utils/WatershedTransform2D.java``, ``apply(hMin, hMax)``).

The order of the flooding decides which pixel of a two-pixel-wide border becomes the dam, so it is reproduced
rather than approximated with another watershed (scikit-image's is a priority-flood with other ties):

- pixels are listed column by column (``x`` outer, ``y`` inner, as ``extractPixelValues``) and sorted by value with
  ties kept in that order (``PixelRecord.compareTo`` breaks ties by creation order);
- neighbours are visited as (x-1, y), (x, y-1), (x+1, y), (x, y+1) (``Neighborhood2DC4``);
- one FIFO queue; labels INIT -1, MASK -2, INQUEUE -3, dam (WSHED) 0, basins 1, 2, ... numbered in the order their
  minima are met; the ``flag`` that lets a dam pixel next to a dam take a basin's label is kept as in the Java;
- pixels never labelled are 0 in the result (Fiji writes INIT as 0; other negative codes clamp to 0 when the float
  result is converted to 16 bits).
"""
from __future__ import annotations

import numba
import numpy as np

from .. import _kernel_cache  # noqa: F401 - cache entries stamped with all kernel sources

INIT, MASK, INQUEUE, WSHED = -1, -2, -3, 0


@numba.njit(cache=True, nogil=True)
def _flood(values, order, size1, size2):  # values / order over the flat index k = x * size2 + y
    n = values.size
    lab = np.full(n, INIT, np.int64)
    fifo = np.empty(n + 1, np.int64)  # every pixel enters the queue at most once per level pass
    dx = np.array([-1, 0, 1, 0])
    dy = np.array([0, -1, 0, 1])
    current_label = 0
    flag = False
    current = 0
    i1 = 0
    i2 = 0
    h = values[order[0]] if n else 0.0
    hmax = values.max() if n else 0.0
    while current < n and h <= hmax:
        h = values[order[current]]
        head = 0
        tail = 0
        for k in range(i1, n):  # mask level h; queue the pixels touching a basin or a dam
            p = order[k]
            if values[p] != h:
                i1 = k
                break
            lab[p] = MASK
            x, y = p // size2, p % size2
            for d in range(4):
                u, v = x + dx[d], y + dy[d]
                if 0 <= u < size1 and 0 <= v < size2 and lab[u * size2 + v] >= WSHED:
                    fifo[tail] = p
                    tail += 1
                    lab[p] = INQUEUE
                    break
        while head < tail:  # extend the basins into level h
            p = fifo[head]
            head += 1
            x, y = p // size2, p % size2
            for d in range(4):
                u, v = x + dx[d], y + dy[d]
                if not (0 <= u < size1 and 0 <= v < size2):
                    continue
                q = u * size2 + v
                if lab[q] > 0:
                    if lab[p] == INQUEUE or (lab[p] == WSHED and flag):
                        lab[p] = lab[q]
                    elif lab[p] > 0 and lab[p] != lab[q]:
                        lab[p] = WSHED
                        flag = False
                elif lab[q] == WSHED:
                    if lab[p] == INQUEUE:
                        lab[p] = WSHED
                        flag = True
                elif lab[q] == MASK:
                    lab[q] = INQUEUE
                    fifo[tail] = q
                    tail += 1
        for k in range(i2, n):  # new minima at level h
            p = order[k]
            if values[p] != h:
                i2 = k
                break
            current += 1
            if lab[p] == MASK:
                current_label += 1
                head = 0
                tail = 1
                fifo[0] = p
                lab[p] = current_label
                while head < tail:
                    p2 = fifo[head]
                    head += 1
                    x, y = p2 // size2, p2 % size2
                    for d in range(4):
                        u, v = x + dx[d], y + dy[d]
                        if 0 <= u < size1 and 0 <= v < size2 and lab[u * size2 + v] == MASK:
                            lab[u * size2 + v] = current_label
                            fifo[tail] = u * size2 + v
                            tail += 1
    return np.maximum(lab, 0)


def watershed(image: np.ndarray) -> np.ndarray:
    """Fiji's ``WatershedTransform2D(image, 4).apply()`` of a 2-D image (rows = y): basins 1..N, dams and
    unlabelled pixels 0, as an int64 array of the image's shape."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"watershed needs a 2-D image, got shape {img.shape}")
    cols = np.ascontiguousarray(img.T)  # [x][y] as the Java's tabLabels: flat index x * height + y
    flat = cols.ravel()
    order = np.argsort(flat, kind="stable")
    return _flood(flat, order, cols.shape[0], cols.shape[1]).reshape(cols.shape).T.copy()


def thin_borders(cells: np.ndarray) -> np.ndarray:
    """The proposal's segments after border thinning: ``cells`` (True = cell, False = border) made into Fiji's
    binary image (cell 0, border 255) and flooded 4-connected; 0 = the one-pixel dams."""
    return watershed(np.where(np.asarray(cells, dtype=bool), 0, 255).astype(np.uint8))
