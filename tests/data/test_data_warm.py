"""The instance step's warm-up jobs (data.warm): on a fresh cache, after them, the instance step compiles nothing."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from compile_spy import SPY


INSTANCE_MISSES = SPY + r"""
import json, numpy as np
from mpfpipe.data.warm import warm_instance_workers
done = warm_instance_workers(None)  # as label_instances calls it without a cluster
event.register("numba:compile", Spy())
from mpfpipe.data.agglomerate import N_FEATURES, agglomerate
from mpfpipe.data.watershed import section_instances
rng = np.random.default_rng(1)
p = rng.random((64, 64)).astype(np.float32)
for agg in ("hierarchical", "one-shot"):
    for score in ("mean", "quantile"):
        lab = section_instances(p, threshold=0.5, seed_distance=4, merge_threshold=0.4, min_size=5, agglomeration=agg,
                                merge_score=score)
    agglomerate(lab, p, 0.5, hierarchical=agg == "hierarchical", classifier=np.ones((4, N_FEATURES)))
print(json.dumps({"compiled_by_warmup": done["compiled"], "compiled_after": sorted(set(compiled))}))
"""


@pytest.mark.slow
def test_instance_jobs_cover_the_instance_step(tmp_path):
    """`label_instances` warms `INSTANCE_JOBS` first (`warm_instance_workers`, here without a cluster); on a fresh
    cache the sections must then compile nothing more, in every merge score and agglomeration."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "MPFPIPE_NO_REEXEC": "1"}
    run = subprocess.run([sys.executable, "-c", INSTANCE_MISSES], env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out == {"compiled_by_warmup": ["merge-float32-serial", "flood-float32-serial"], "compiled_after": []}
