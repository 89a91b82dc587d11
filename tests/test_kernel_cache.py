"""mpfpipe/_kernel_cache.py: mpfpipe's Numba cache entries are stamped with the sources of every module that uses
Numba, so that a change to a callee's file (inlined into a kernel elsewhere) makes the caller's entry stale."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
from numba import njit

from mpfpipe import _kernel_cache


@njit(cache=True)
def _not_ours(x):
    return x + 1


def test_mpfpipe_kernels_get_the_stamped_locator_and_others_numbas_own():
    from mpfpipe.data import flood
    loc = flood._flood._cache._impl._locator
    stamp = loc.get_source_stamp()
    assert type(loc).__name__ == "_Stamped" and stamp[1] == _kernel_cache.sources_hash()
    assert stamp[0] == loc._inner.get_source_stamp()  # Numba's own stamp of the file, kept
    assert type(_not_ours._cache._impl._locator).__name__ != "_Stamped"
    assert len(_kernel_cache.sources_hash()) == 64


def _run(cache_dir, other_hash: bool) -> dict:
    code = textwrap.dedent(f"""
        import json, numpy as np
        import mpfpipe._kernel_cache as kc
        if {other_hash!r}:
            kc.sources_hash = lambda: "0" * 64  # as if another kernel module had changed
        from mpfpipe.data.flood import flood
        flood(np.zeros((3, 4), np.uint16), np.eye(3, 4, dtype=np.int64))
        from mpfpipe.data import flood as f
        s = f._flood.stats
        print(json.dumps({{"hits": sum(s.cache_hits.values()), "misses": sum(s.cache_misses.values())}}))
    """)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_change_in_any_kernel_module_makes_the_cache_entries_stale(tmp_path):
    """Compiled once, the kernel loads from the cache in a new process; with another sources hash (any Numba
    module of mpfpipe changed) the entry is stale and compiled again; back to the first hash, it is stale again
    (the entry was replaced), then loads."""
    assert _run(tmp_path, False) == {"hits": 0, "misses": 1}
    assert _run(tmp_path, False) == {"hits": 1, "misses": 0}
    assert _run(tmp_path, True) == {"hits": 0, "misses": 1}
    assert _run(tmp_path, True) == {"hits": 1, "misses": 0}
    assert _run(tmp_path, False) == {"hits": 0, "misses": 1}
    assert np.array_equal(_not_ours(np.zeros(2)), np.ones(2))
