"""Source text for the warm-up tests' subprocess scripts: ``compiled`` collects the name of every function Numba
compiles once ``event.register("numba:compile", Spy())`` has run."""
SPY = r"""
from numba.core import event
compiled = []
class Spy(event.Listener):
    def on_start(self, ev):
        compiled.append(ev.data["dispatcher"].py_func.__qualname__)
    def on_end(self, ev):
        pass
"""
