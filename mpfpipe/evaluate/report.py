"""The evaluation report: JSON with every number, and overlay PNGs (prediction over the image) to look at."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from .._json import json_safe


def write_json(report: dict, path) -> Path:
    """Write atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(json_safe(report), fh, indent=2)
    os.replace(tmp, path)
    return path


def pick_slices(n: int, k: int) -> list[int]:
    """Up to k evenly spaced slice indices out of n."""
    if n <= 0 or k <= 0:
        return []
    return sorted(set(int(round(v)) for v in np.linspace(0, n - 1, min(k, n))))


def overlay_png(path, image, prob, truth, *, positive: int, threshold: float, ignore_index: int = 255,
                title: str = "") -> Path:
    """Three panels: the image, the positive-class probability, and the image with the predicted positive pixels
    (red) and the truth's positive pixels outlined (green, when truth is given)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import ndimage

    h, w = prob.shape
    img = np.zeros((h, w), np.float32) if image is None else np.asarray(image, dtype=np.float32)[:h, :w]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4), dpi=100)
    axes[0].imshow(img, cmap="gray")
    axes[0].set_title("image" if image is not None else "image (not available)")
    im = axes[1].imshow(prob, cmap="magma", vmin=0, vmax=1)
    axes[1].set_title(f"p(class {positive})")
    fig.colorbar(im, ax=axes[1], fraction=0.046)
    axes[2].imshow(img, cmap="gray")
    pred = prob > threshold
    rgba = np.zeros((h, w, 4), np.float32)
    rgba[pred] = (1.0, 0.15, 0.15, 0.45)
    axes[2].imshow(rgba)
    if truth is not None:
        t = (truth == positive)
        edge = t & ~ndimage.binary_erosion(t)
        g = np.zeros((h, w, 4), np.float32)
        g[edge] = (0.1, 1.0, 0.2, 0.9)
        g[truth == ignore_index] = (0.3, 0.3, 1.0, 0.25)
        axes[2].imshow(g)
    axes[2].set_title(f"prediction > {threshold:g} (red)" + (", truth (green)" if truth is not None else ""))
    for ax in axes:
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
