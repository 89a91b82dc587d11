"""User-facing errors.

Every error a user can cause (bad input, bad file, bad option) is raised as an `MpfError` subclass with a message
that says what is wrong and, where possible, how to fix it. The CLI prints the message and exits 1 (2 for a
`UsageError`, whichever spelling carried the value: the command line, ``--config`` or a workflow); anything else
is a bug, reported in one line naming the command and its files (the traceback only with ``--debug``).
"""


class MpfError(Exception):
    """Base class of errors caused by the user's input, reported without a traceback."""


class UsageError(MpfError):
    """A value the user gave is invalid (an option, a workflow parameter, an environment variable): exit 2."""


class ArchitectureError(MpfError, ValueError):
    """A network description is invalid (unknown layer, not exact, ...)."""


class ModelFileError(MpfError):
    """A model file is missing, truncated, tampered with or not an mpfpipe model."""


class DataError(MpfError):
    """An input image, label or dataset is invalid."""


class ValueFormatError(UsageError, DataError):
    """An option's text cannot be parsed (a split, a label map, ...): a usage error (exit 2), and a DataError for
    the callers that catch those."""


class OutputExistsError(MpfError):
    """An output exists and --overwrite was not given."""


class ClusterError(MpfError):
    """The Dask cluster cannot be started or reached, or was lost during a run."""


class Interrupted(MpfError):
    """The user pressed Ctrl-C; the message says what was kept and how to continue (exit code 130)."""


class TrainingError(MpfError):
    """Training cannot start or continue (bad options, incompatible checkpoint, ...)."""


class TrainingOptionError(UsageError, TrainingError):
    """A training option's text cannot be parsed (``--max-time abc``): a usage error (exit 2)."""


class OptionError(UsageError, ValueError):
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


class WorkflowError(UsageError):
    """A workflow file is invalid, or a parameter / input of it is wrong: a usage error (exit 2), as the same
    mistake on the command line is."""
