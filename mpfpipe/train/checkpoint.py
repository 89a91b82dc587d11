"""Training checkpoints: one ``.npz`` file (no pickle) holding the float64 arrays of the optimiser state and a
JSON document (``__meta__``, stored as UTF-8 bytes) with everything else: configuration, counters, scalars,
RNG state and the log so far. Written atomically: a temporary file in the same folder, flushed to disk, then
renamed over the old checkpoint, so a run killed at any moment leaves the previous or the new checkpoint, whole.
"""
from __future__ import annotations

import json
import os
import tempfile
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"format": FORMAT, "version": VERSION, **meta}
    payload = {f"a_{k}": np.ascontiguousarray(v) for k, v in arrays.items() if v is not None}
    payload["__meta__"] = np.frombuffer(json.dumps(doc, allow_nan=True).encode(), dtype=np.uint8)
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
