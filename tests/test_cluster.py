"""mpfpipe.cluster: one layout rule, one scheduler vocabulary (address or scheduler file), and the task runner that
runs the same tasks in this process (``workers=0``) or on a real LocalCluster of worker processes."""
from __future__ import annotations

import os

import pytest

from mpfpipe.cluster import choose_layout, connect, is_address, task_runner
from mpfpipe.errors import ClusterError, MpfError


def test_is_address_tells_addresses_from_scheduler_files():
    for address in ("tcp://127.0.0.1:8786", "tls://head:8786", "inproc://x", "head:8786", "10.0.0.1:8786",
                    "[::1]:8786"):
        assert is_address(address), address
    for path in ("scheduler.json", "/shared/dask/scheduler.json", "./s.json", "run:1/scheduler.json"):
        assert not is_address(path), path


def test_choose_layout_is_the_one_rule():
    assert choose_layout(cores=8) == (8, 1)
    assert choose_layout(2, cores=8) == (2, 4)
    assert choose_layout(threads=2, cores=8) == (4, 2)
    assert choose_layout(3, 3, cores=8) == (3, 3)
    with pytest.raises(ClusterError, match="--workers must be >= 1, got 0"):
        choose_layout(0, cores=8)


def test_a_missing_scheduler_file_is_named(tmp_path):
    missing = tmp_path / "scheduler.json"
    for kw in ({"scheduler": str(missing)}, {"scheduler_file": str(missing)}):
        with pytest.raises(ClusterError, match=f"^scheduler file {missing} not found$"):
            connect(**kw)
    with pytest.raises(ClusterError, match="not both"):
        connect(scheduler="tcp://127.0.0.1:1", scheduler_file=str(missing))


def _double(x):
    if x == 3:
        raise ValueError("three")
    return 2 * x


def _total(*parts):
    return sum(parts)


def _pid(_):
    return os.getpid()


def _run(runner):
    a = runner.submit(_double, 1, key="a")
    b = runner.submit(_double, 3, key="b")
    c = runner.submit(_total, a, 10, key="c")  # waits for a
    futures = {a: "a", b: "b", c: "c"}
    out = {futures[f]: r for f, r in runner.completed(futures)}
    return {k: (type(v).__name__, str(v)) if isinstance(v, BaseException) else v for k, v in out.items()}


def test_the_task_runner_gives_the_same_results_in_this_process_and_on_a_cluster(tmp_path):
    want = {"a": 2, "b": ("ValueError", "three"), "c": 12}
    with task_runner(workers=0) as local:
        assert local.local and local.slots() == 1 and local.startup == 0.0
        assert local.scatter(want) is want
        assert _run(local) == want
        pid = local.submit(_pid, 0, key="p")
        assert [r for _, r in local.completed([pid])] == [os.getpid()]
    with task_runner(workers=1, threads=1) as remote:
        assert not remote.local and remote.slots() == 1
        assert _run(remote) == want
        pid = remote.submit(_pid, 0, key="p")
        assert [r for _, r in remote.completed([pid])] != [os.getpid()]  # a worker process
        sfile = tmp_path / "scheduler.json"
        remote.client.write_scheduler_file(str(sfile))
        # the same vocabulary everywhere: a scheduler file given as --scheduler joins (and waits for a worker)
        with task_runner(scheduler=str(sfile)) as joined:
            assert _run(joined) == want
            assert joined.client.scheduler.address == remote.client.scheduler.address


def test_a_local_run_of_a_failing_task_reports_it_like_dask():
    with task_runner(workers=0) as local:
        bad = local.submit(_double, 3, key="x")
        later = local.submit(_total, bad, key="y")  # a failed dependency fails its dependant, as on Dask
        res = [r for _, r in local.completed([bad, later])]
    assert [type(r).__name__ for r in res] == ["ValueError", "ValueError"]
    assert not isinstance(res[0], MpfError)


def test_a_shared_runner_serves_every_task_runner_of_the_same_arguments_inside_it():
    """`shared_runner`: inside it, task_runner with the same arguments is the same runner on the same worker
    processes (one cluster start for segment --instances' two steps), one with other arguments starts its own;
    after the block the cluster is closed and task_runner starts a new one again."""
    from mpfpipe.cluster import shared_runner
    with shared_runner(1, 1) as shared:
        first = _worker_pid(shared)
        with task_runner(1, 1) as inner:
            assert inner is shared and _worker_pid(inner) == first
        with task_runner(1, 1) as again:  # the first inner block did not close it
            assert again is shared and _worker_pid(again) == first
        with task_runner(workers=0) as other:
            assert other is not shared and other.local
    assert shared.client.status == "closed"
    with task_runner(1, 1) as fresh:
        assert fresh is not shared and _worker_pid(fresh) != first


def _worker_pid(runner):
    task = runner.submit(_pid, 0, key=f"pid-{id(runner)}-{os.urandom(4).hex()}")
    return [r for _, r in runner.completed([task])][0]
