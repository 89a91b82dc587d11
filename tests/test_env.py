"""Values from outside the command line (mpfpipe._env): environment variables and scheduler files, each checked
where it enters with a line naming it."""
from __future__ import annotations

import json

import pytest

from mpfpipe._env import EnvironmentVariableError, check_environment, check_scheduler_file, positive_int, switch
from mpfpipe.errors import ClusterError, UsageError


@pytest.mark.parametrize("value, ok", [("3", 3), (" 2 ", 2), ("", None), ("abc", None), ("0", None), ("-1", None),
                                       ("2.5", None)])
def test_thread_counts(monkeypatch, value, ok):
    monkeypatch.setenv("MPFPIPE_THREADS", value)
    if ok is not None or value == "":
        assert positive_int("MPFPIPE_THREADS") == ok
    else:
        with pytest.raises(EnvironmentVariableError, match=f"MPFPIPE_THREADS={value!r}: expected a whole number"):
            positive_int("MPFPIPE_THREADS")


def test_openmp_level_lists_and_cache_folders(monkeypatch, tmp_path):
    monkeypatch.setenv("OMP_NUM_THREADS", "4,2")
    check_environment()  # OpenMP's nested form is valid
    monkeypatch.setenv("OMP_NUM_THREADS", "4,two")
    with pytest.raises(UsageError, match="OMP_NUM_THREADS"):
        check_environment()
    monkeypatch.delenv("OMP_NUM_THREADS")
    (tmp_path / "f").write_text("x")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "f"))
    with pytest.raises(UsageError, match="XDG_CACHE_HOME=.*a file, not a folder"):
        check_environment()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "new"))  # absent: created when needed
    check_environment()


@pytest.mark.parametrize("value, ok", [("1", True), ("0", False), (" 0 ", False), ("", None), ("yes", "x"),
                                       ("2", "x")])
def test_switches(monkeypatch, value, ok):
    monkeypatch.setenv("MPFPIPE_WINOGRAD", value)
    if ok != "x":
        assert switch("MPFPIPE_WINOGRAD") is ok
        check_environment()
    else:
        with pytest.raises(UsageError, match=f"MPFPIPE_WINOGRAD={value!r}: expected 0 or 1"):
            check_environment()


def test_scheduler_files(tmp_path):
    good = tmp_path / "s.json"
    good.write_text(json.dumps({"address": "tcp://127.0.0.1:8786", "type": "Scheduler"}))
    assert check_scheduler_file(good) == str(good)
    cases = {"{": "is not JSON", "[]": "holds no scheduler address", '{"address": 5}': "holds no scheduler address",
             '{"address": "localhost"}': "holds no scheduler address"}
    for text, needle in cases.items():
        (tmp_path / "b.json").write_text(text)
        with pytest.raises(ClusterError, match=needle):
            check_scheduler_file(tmp_path / "b.json")
    with pytest.raises(ClusterError, match="not found"):
        check_scheduler_file(tmp_path / "none.json")
