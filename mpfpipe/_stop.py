"""A stop asked for by a signal (the CLI's SIGINT / SIGTERM handler), seen by the long loops.

The handler raises KeyboardInterrupt where the main thread happens to be. If that is inside a finaliser
(``__del__``, a weakref callback), Python prints the exception and carries on, and the run would go on as if no
signal had come. So the handler also sets this flag, and the training, segmentation and folder loops check it at
each step or result: a stop is never lost, at worst it waits for the next step.
"""
from __future__ import annotations

_requested = False


def request() -> None:
    global _requested
    _requested = True


def requested() -> bool:
    return _requested


def check() -> None:
    """Raise KeyboardInterrupt when a stop was asked for (a no-op in the Python API, where no handler sets it)."""
    if _requested:
        raise KeyboardInterrupt
