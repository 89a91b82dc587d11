"""What runs on a worker: a run of level-0 blocks, pipelined, and one pyramid block (no Dask here).

A level-0 task takes a few consecutive blocks (`group_blocks`) and keeps the worker's core(s) on the forward pass:
a helper thread reads block i + 1 (with its halo) and writes block i - 1 (compressing its chunks, then its done
marker and checksums) while the task thread runs block i's forward pass. Reads and writes wait on the disk and on
Zarr's I/O thread as much as they compute; done in the task thread they left the core idle for ~3 % of a 512²
block on the development VM (a 5-8 ms read and a ~20 ms write against a ~1 s forward pass). Every block still
writes only its own chunks, then its done marker, so resuming, checksums and the output are exactly those of one
task per block. A block that fails is reported on its own; the
others of its task go on.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

from ..errors import SegmentError
from . import omezarr, pyramid
from .blocks import Engine, forward_block, peak_rss_bytes, read_block

MAX_GROUP = 8  # blocks per task at most: the progress bar and a retry after a lost worker stay fine-grained


def group_size(n_blocks: int, slots: int, max_group: int = MAX_GROUP) -> int:
    """Blocks per task: as many tasks as ~4 per task slot so the slots finish together (a slot's last task is
    short), each of at most ``max_group`` blocks."""
    return max(1, min(max_group, n_blocks // max(1, 4 * slots)))


def group_blocks(blocks: list, slots: int, max_group: int = MAX_GROUP) -> list[list]:
    """Consecutive runs of ``blocks`` (in grid order) of `group_size` blocks."""
    return group_units([[b] for b in blocks], slots, max_group)


def group_units(units: list[list], slots: int, max_group: int = MAX_GROUP) -> list[list]:
    """Consecutive runs of units (lists of blocks that must share a task), each of about `group_size` blocks."""
    size = group_size(sum(len(u) for u in units), slots, max_group)
    groups, current = [], []
    for unit in units:
        if current and len(current) + len(unit) > size:
            groups.append(current)
            current = []
        current = current + unit
    return groups + [current] if current else groups


def _timed(fn, *args):
    t0, c0 = time.perf_counter(), time.thread_time()
    out = fn(*args)
    return out, time.perf_counter() - t0, time.thread_time() - c0


def blocks_task(engine: Engine, volume, out_path: str, token: str, blocks: list, inline: dict | None = None
                ) -> list[dict]:
    """Segment ``blocks`` (see the module doc). Returns one dict per block: its index, and either its timings
    (``seconds`` = its share of the task's wall time, ``cpu_seconds`` = of the process's CPU time, plus the
    read / forward / write times) or ``error`` (the exception).

    ``inline``: {index: (block, source indices)} of level-1 pyramid blocks whose sources are all among ``blocks``;
    each is made from its sources while they are in memory (`pyramid.LevelOne`) and written after them, instead of
    by a `level_task` that reads them back from disk. Their dicts come last, with ``level`` 1."""
    t_start, c_start = time.perf_counter(), time.process_time()
    writer = omezarr.Writer.get(out_path, volume.two_d, token)
    halo = engine.halo  # symmetric with TTA
    results = {b.index: {"index": b.index} for b in blocks}
    parents = {}
    for b1, needed in (inline or {}).values():
        one = pyramid.LevelOne(b1, needed, engine.net.n_classes, writer.probs.dtype)
        parents.update({tuple(i): one for i in needed})
    level1 = {id(one): {"index": one.block.index, "level": 1} for one in parents.values()}
    writes = []
    with ThreadPoolExecutor(1, thread_name_prefix="mpfpipe-block-io") as io:
        def read(b):
            return io.submit(_timed, read_block, volume.read, b, volume.slice_size, halo, volume.shape)

        pending = read(blocks[0])
        for i, b in enumerate(blocks):
            res = results[b.index]
            res["start"] = time.time()
            try:
                inputs, res["read_seconds"], _ = pending.result()
            except Exception as exc:  # noqa: BLE001 - reported for this block, the others go on
                res["error"] = exc
                inputs = None
            if i + 1 < len(blocks):
                pending = read(blocks[i + 1])  # while this block's forward pass runs
            if inputs is None:
                continue
            try:
                (probs, labels), res["forward_seconds"], _ = _timed(forward_block, engine, b, inputs)
            except Exception as exc:  # noqa: BLE001
                res["error"] = exc
                continue
            del inputs
            writes.append((b, io.submit(_timed, writer.write, b, probs, labels)))  # behind the next forward
            one = parents.get(tuple(b.index))
            if one is not None and one.add(b, pyramid.stored(writer, probs), labels):
                level1[id(one)]["write"] = io.submit(_timed, writer.write, one.block, one.probs, one.labels, 1)
            del probs, labels
        for b, fut in writes:
            try:
                res = results[b.index]
                _, res["write_seconds"], _ = fut.result()
            except Exception as exc:  # noqa: BLE001
                results[b.index]["error"] = exc
        for one in {id(o): o for o in parents.values()}.values():
            res = level1[id(one)]
            try:
                if one.missing:  # a source failed: this block is left for the rerun that redoes that source
                    raise SegmentError(f"its source block {sorted(one.missing)[0]} of level 0 failed")
                _, res["seconds"], res["cpu_seconds"] = res.pop("write").result()
            except Exception as exc:  # noqa: BLE001
                res.pop("write", None)
                res["error"] = exc
    n = len(blocks)
    wall, cpu, pid, rss = time.perf_counter() - t_start, time.process_time() - c_start, os.getpid(), peak_rss_bytes()
    for res in results.values():
        res.update(seconds=wall / n, cpu_seconds=cpu / n, pid=pid, peak_rss=rss)
    for res in level1.values():
        res.update(pid=pid, peak_rss=rss)
    return [results[b.index] for b in blocks] + list(level1.values())


def level_task(out_path: str, two_d: bool, token: str, level: int, block, needed: list, halve_z: bool,
               *sources) -> dict:
    """One pyramid block: read its sources' pixels from the level below, halve (z too with ``halve_z``), write,
    mark done. ``sources``
    are the results of the tasks that wrote its source blocks (``needed``: their indices) among others, there to
    make Dask run this after them; it refuses to run when one of its source blocks failed in them."""
    failed = {tuple(r["index"]) for group in sources for r in (group if isinstance(group, list) else [group])
              if "error" in r and r.get("level", 0) == level - 1}
    bad = [i for i in needed if tuple(i) in failed]
    if bad:
        raise SegmentError(f"its source block {bad[0]} of level {level - 1} failed")
    t0, c0 = time.perf_counter(), time.process_time()
    writer = omezarr.Writer.get(out_path, two_d, token)
    probs, labels = pyramid.compute_level_block(writer, level, block, halve_z)
    writer.write(block, probs, labels, level=level)
    return {"index": block.index, "level": level, "seconds": time.perf_counter() - t0,
            "cpu_seconds": time.process_time() - c0, "pid": os.getpid(), "peak_rss": peak_rss_bytes()}
