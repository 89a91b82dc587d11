"""User-facing errors.

Every error a user can cause (bad input, bad file, bad option) is raised as an `MpfError` subclass with a message
that says what is wrong and, where possible, how to fix it. The CLI prints the message and exits 1; anything else
is a bug and gets a traceback.
"""


class MpfError(Exception):
    """Base class of errors caused by the user's input, reported without a traceback."""


class ArchitectureError(MpfError, ValueError):
    """A network description is invalid (unknown layer, not exact, ...)."""


class ModelFileError(MpfError):
    """A model file is missing, truncated, tampered with or not an mpfpipe model."""


class DataError(MpfError):
    """An input image, label or dataset is invalid."""


class OutputExistsError(MpfError):
    """An output exists and --overwrite was not given."""


class ClusterError(MpfError):
    """The Dask cluster cannot be started or reached, or was lost during a run."""


class Interrupted(MpfError):
    """The user pressed Ctrl-C; the message says what was kept and how to continue (exit code 130)."""


class TrainingError(MpfError):
    """Training cannot start or continue (bad options, incompatible checkpoint, ...)."""


class OptionError(MpfError, ValueError):
    """An option value has the wrong type or lies outside its range."""


class SegmentError(MpfError):
    """Some blocks failed; the output is left incomplete and a rerun retries them."""


class FolderSegmentError(MpfError):
    """Some images failed; the others have their results and a rerun retries the failed ones."""

    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result  # the FolderResult of the run (mpfpipe.segment.folder), for the CLI's summary


class ExportError(MpfError):
    """The model cannot be exported (or the onnx package is missing)."""


class WorkflowError(MpfError):
    """A workflow file is invalid, or a parameter / input of it is wrong."""
