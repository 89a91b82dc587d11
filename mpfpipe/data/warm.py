"""The instance step's kernels as `mpfpipe.warmup` jobs: compiled once per machine, not by every worker at once.

After an install, or any change to a Numba-using module (`_kernel_cache` then makes every cache entry stale), the
instance step's first blocks compiled the flooding and merging kernels in every worker at the same time (README:
30.3 s for the step on a 20 x 2048^2 volume in such a run, against 18.8 s warm). `warm_instance_workers` runs
these jobs under `warmup`'s locks and markers before the step's first block; ``mpfpipe warmup`` runs them too.
The kernels take no dtype of the net and have no parallel twins: each job ignores the dtype it is given, and is
warmed as the "serial" variant only.
"""
from __future__ import annotations

import numpy as np

from ..warmup import warm_on


def _membrane_map() -> np.ndarray:
    """A 40 x 40 membrane map of 3 x 3 cells (walls 0.9, interiors 0.1, plus noise)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:40, :40]
    wall = (yy % 13 < 2) | (xx % 13 < 2)
    return np.clip(np.where(wall, 0.9, 0.1) + rng.normal(0, 0.05, (40, 40)), 0, 1).astype(np.float32)


def _fragments(p):
    from .watershed import fragments
    return fragments(p, threshold=0.5, seed_distance=3)[2]


def flood_job(dtype) -> None:
    """Seeds and watershed (`peaks`, `flood`, raster ids)."""
    from .flood import raster_ids
    raster_ids(_fragments(_membrane_map()))


def merge_job(dtype) -> None:
    """Region merging (`agglomerate`): the mean, percentile and learned scores, hierarchical and one-shot."""
    from .agglomerate import N_FEATURES, agglomerate, edge_features, graph
    p = _membrane_map()
    lab = _fragments(p)
    for hierarchical in (True, False):
        for quantile, classifier in ((None, None), (5, None), (None, np.ones((4, N_FEATURES)))):
            agglomerate(lab, p, 0.5, quantile, hierarchical=hierarchical, classifier=classifier)
    edge_features(*graph(lab, p))


INSTANCE_JOBS = {"merge": merge_job, "flood": flood_job}  # the longer first


def warm_instance_workers(client) -> dict:
    """`warmup.warm_on` of `INSTANCE_JOBS` on every worker of ``client`` (in this process when None)."""
    # one variant whatever the workers' threads: these kernels have no parallel twins
    return warm_on(client, list(INSTANCE_JOBS), "float32", INSTANCE_JOBS, ("serial",))
