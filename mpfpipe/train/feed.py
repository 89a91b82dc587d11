"""Handing out a batch's fine tail (`chunks.plan_chunks`) to the workers as they run dry.

Why. The body of a batch is submitted at once, each chunk to the worker that holds its images. Workers do not run
at the same speed, though: on a small machine one shares its core with the driver and the scheduler, and two
processes side by side slow each other unevenly. With every chunk pinned up front, the fastest worker then idles
for the whole difference at the end of every evaluation (256 steel images of 100x100 on 2 workers: ~85 ms of
1.75 s, measured). The fine tail's chunks are kept back instead and given out one at a time: a worker gets the
next one when it has fewer than ``depth`` chunks queued (one running and one waiting, so it never waits for the
driver's round trip), its own blocks' chunks first (no data to move), else the smallest remaining chunk of the
worker with the most tail work left (a few images to fetch). Workers then finish within about one fine chunk of
each other.

Placement only: which worker runs a chunk never changes its result, and the reduction adds the chunk results in
chunk order whatever the order they arrive in, so every bit of an evaluation is the same.
"""
from __future__ import annotations


class Feeder:
    """Dispatch of the tail chunks ``pool`` (indices into the batch's chunks).

    ``home[j]``: the worker holding chunk j's images (None: anywhere); ``cost[j]``: its estimated seconds;
    ``submit(j, worker)`` submits chunk j to that worker and returns its future. Call `track` for every chunk
    submitted up front, `start` once, then `done` with each finished future's key: both return the
    [(chunk, future)] they submitted."""

    def __init__(self, workers, pool, home, cost, submit, depth: int = 2):
        self.submit_fn, self.depth, self.cost = submit, int(depth), cost
        self.busy = {a: 0 for a in workers}
        self.pending = {a: [] for a in workers}  # per home worker: its tail chunks, largest first
        self.orphans = []                        # tail chunks whose home is not among the workers
        for j in sorted(pool, key=lambda j: (-cost[j], j)):
            h = home.get(j)
            (self.pending[h] if h in self.pending else self.orphans).append(j)
        self.left = {a: sum(cost[j] for j in js) for a, js in self.pending.items()}
        self.where = {}  # future key -> the worker it was given to

    def track(self, key, worker):
        if worker in self.busy:
            self.busy[worker] += 1
            self.where[key] = worker

    def start(self):
        out = []
        for a in sorted(self.busy, key=lambda a: (self.busy[a], a)):  # the least busy first
            out += self._fill(a)
        return out

    def done(self, key):
        a = self.where.pop(key, None)
        if a is None:
            return []
        self.busy[a] -= 1
        return self._fill(a)

    def _next(self, a):
        if self.pending[a]:
            j = self.pending[a].pop(0)
            self.left[a] -= self.cost[j]
            return j
        if self.orphans:
            return self.orphans.pop(0)
        donor = max(self.left, key=lambda b: (self.left[b] if self.pending[b] else -1.0, b))
        if not self.pending[donor]:
            return None
        j = self.pending[donor].pop()  # its smallest: the one it would have run last
        self.left[donor] -= self.cost[j]
        return j

    def _fill(self, a):
        out = []
        while self.busy[a] < self.depth:
            j = self._next(a)
            if j is None:
                break
            fut = self.submit_fn(j, a)
            self.busy[a] += 1
            self.where[fut.key] = a
            out.append((j, fut))
        return out

    @property
    def remaining(self) -> int:
        return sum(len(js) for js in self.pending.values()) + len(self.orphans)
