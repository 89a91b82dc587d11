"""Whether an output mpfpipe wrote is still intact, whatever its kind: the one place that knows every package's
verifier, so it sits above them (the workflow runner believes a step's "done" only when this finds nothing)."""
from __future__ import annotations


def damaged(path) -> list[str]:
    """What is missing or damaged in the mpfpipe output at ``path`` (empty when intact): a model's SHA-256, every
    dataset chunk, every done segmentation block, every folder-inference mask against the checksum recorded when
    it was written. A "done" recorded elsewhere (a workflow step) is believed only when this is empty."""
    from .. import _safety
    from ..errors import MpfError
    kind = _safety.recognise(path)
    try:
        if kind == "model":
            from ..model import load_model
            load_model(path)
        elif kind == "dataset":
            from ..data import open_dataset
            return open_dataset(path).verify()
        elif kind == "segmentation":
            from ..segment.verify import damaged_outputs
            return damaged_outputs(path)
        elif kind == "folder-segmentation":
            from ..segment.folder import verify_folder
            return verify_folder(path)[1]
    except MpfError as exc:
        return [str(exc)]
    return []
