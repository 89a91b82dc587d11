"""Training checkpoints: one ``.npz`` file (no pickle) holding the float64 arrays of the optimiser state and a
JSON document (``__meta__``, stored as UTF-8 bytes) with everything else: configuration, counters, scalars,
RNG state and the log so far. Written atomically: a temporary file in the same folder, flushed to disk, then
renamed over the old checkpoint, so a run killed at any moment leaves the previous or the new checkpoint, whole.
Training writes them with `CheckpointWriter`, in the background while the next step computes.
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path

import numpy as np

from ..errors import TrainingError

FORMAT = "mpfpipe-checkpoint"
VERSION = 3
# Version 1 runs summed per-image results in a pairwise tree; version 2 sums chunk results (`chunks`); version 3
# cuts the last chunks of a plan finer (the fine tail). Each is a different float64 order, so an older run cannot
# continue bit-identically and is refused.
_ORDER = {1: "per-image reduction", 2: "chunks without a fine tail"}


def save_checkpoint(path, arrays: dict, meta: dict) -> Path:
    return _write(Path(path), _payload(arrays, meta))


def _payload(arrays: dict, meta: dict) -> dict:
    """What a checkpoint file holds, copied: later changes to ``arrays`` or ``meta`` do not reach it."""
    doc = {"format": FORMAT, "version": VERSION, **meta}
    payload = {f"a_{k}": np.array(v, order="C", copy=True) for k, v in arrays.items() if v is not None}
    payload["__meta__"] = np.frombuffer(json.dumps(doc, allow_nan=True).encode(), dtype=np.uint8)
    return payload


def _write(path: Path, payload: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


class CheckpointWriter:
    """Checkpoints written by a background thread, one at a time and in order, so a training step goes on while
    the previous step's checkpoint is flushed to disk (n3's Adam state: 9 to 27 ms a step, measured). The state is
    copied and the metadata serialised by the caller, so later steps cannot change what is written. A run killed
    meanwhile leaves the previous checkpoint whole (atomic rename), and resuming from it is just as exact. A
    failed write (a full disk) is raised by the next `submit` or by `wait`."""

    def __init__(self):
        self._thread = None
        self._error = None

    def submit(self, path, arrays: dict, meta: dict) -> None:
        payload = _payload(arrays, meta)
        self.wait()
        self._thread = threading.Thread(target=self._run, args=(Path(path), payload), name="mpfpipe-checkpoint")
        self._thread.start()

    def _run(self, path, payload):
        try:
            _write(path, payload)
        except BaseException as exc:  # noqa: BLE001 - handed to the training thread by wait()
            self._error = exc

    def wait(self) -> None:
        """Block until the last checkpoint is on disk; raise its write error, if any."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            err, self._error = self._error, None
            raise err


def load_checkpoint(path) -> tuple[dict, dict]:
    """(arrays, meta) of a checkpoint; TrainingError if it is missing or not a checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"no checkpoint at {path} to resume from")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["__meta__"]).decode())
            arrays = {k[2:]: z[k] for k in z.files if k.startswith("a_")}
    except (OSError, ValueError, KeyError) as exc:
        raise TrainingError(f"{path} is not a readable mpfpipe checkpoint ({exc})") from None
    if meta.get("format") != FORMAT:
        raise TrainingError(f"{path} is not an mpfpipe checkpoint")
    if meta.get("version", 0) > VERSION:
        raise TrainingError(f"{path}: checkpoint version {meta['version']} is newer than this mpfpipe")
    if meta.get("version", 0) < VERSION:
        v = meta.get("version")
        raise TrainingError(f"{path} was written by an older mpfpipe (checkpoint version {v}, "
                            f"{_ORDER.get(v, 'another summation order')}): this version sums gradients in another "
                            f"order, so the run cannot continue bit-identically; finish it with that mpfpipe, or "
                            f"start again with --overwrite")
    return arrays, meta
