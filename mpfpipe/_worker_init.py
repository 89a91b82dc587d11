"""Dask worker preload (``distributed.worker.preload``, set for the workers we start, `_runtime.prespawn_config`).

A terminal's Ctrl-C reaches the whole process group, workers included, and so does the SIGTERM of ``scancel`` or
a SLURM time limit; a worker dying of it mid-task prints its own tracebacks (and leaks its semaphores) over the
driver's one-line message. The driver owns both signals: it stops the run and shuts its workers down. So a
worker ignores SIGINT, and ignores SIGTERM while the process that started it lives (an orphaned worker still
ends on SIGTERM).
"""
import os
import signal

_parent = None


def _on_sigterm(signum, frame):
    if os.getppid() == _parent:
        return  # the driver got it too and is closing this worker
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def dask_setup(worker=None):
    global _parent
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _parent = os.getppid()
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: nothing to do
        pass
