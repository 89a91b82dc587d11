"""JSON output shared by reports, run folders and `info`: numpy-safe conversion."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def json_safe(obj):
    """JSON-safe copy: numpy scalars/arrays to Python, NaN/inf to None, paths to strings."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj
