"""JSON output of the run folder: numpy-safe conversion and atomic writes."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .._json import json_safe


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(json_safe(obj), fh, indent=2, default=str)
    os.replace(tmp, path)
