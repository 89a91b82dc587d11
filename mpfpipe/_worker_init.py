"""Dask worker preload (``distributed.worker.preload``, set for the workers we start, `_runtime.prespawn_config`).

A terminal's Ctrl-C reaches the whole process group, workers included; a worker dying of it mid-task prints
its own tracebacks over the driver's one-line message. The driver owns Ctrl-C: it stops the run and shuts its
workers down, so they ignore SIGINT.
"""
import signal


def dask_setup(worker=None):
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: nothing to do
        pass
