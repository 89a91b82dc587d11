"""An EM-like test section for the instance step's merging: a 6 x 6 grid of cells (truth ids) with 2-pixel
membranes, its membrane probability blurred and noisy (seeded), so that the watershed cuts some cells and the
merging has to join them again."""
import numpy as np
from scipy import ndimage


def cell_grid(seed: int):
    """(membrane probability float32, truth ids int64: 0 on membranes) of a 96 x 96 section."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((96, 96), np.int64)
    for i in range(6):
        for j in range(6):
            truth[16 * i + 1:16 * i + 15, 16 * j + 1:16 * j + 15] = 1 + 6 * i + j
    p = ndimage.gaussian_filter((truth == 0).astype(np.float64), 1.0) + rng.normal(0, 0.15, truth.shape)
    return np.clip(p, 0, 1).astype(np.float32), truth
