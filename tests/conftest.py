import sys
from pathlib import Path

import pytest

# tests/naive.py is the reference implementation the engine tests compare against
sys.path.insert(0, str(Path(__file__).parent))

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (../shared/data beside the repository)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def isa_cache(tmp_path_factory):
    """``isa_cache(build)``: the NUMBA_CACHE_DIR of a process built for one instruction-set target (``"host"``,
    ``"haswell"``). One folder per target for the whole session, kept apart from the default cache: the tests that
    compare builds compile each target's kernels once between them, and never read a build made outside the run."""
    base = tmp_path_factory.mktemp("numba-isa")
    return lambda build: str(base / f"cache-{build}")
