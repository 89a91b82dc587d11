"""The import contract: mpfpipe's layers only import downwards, no module imports itself round a cycle, and no
private name of a subpackage is imported from outside it.

    cli  >  workflow, bench  >  train | segment | evaluate | export  >  data  >  engine  >  kernels

Read from the code itself (every ``import`` in every module, the ones inside functions too, and the
``module:function`` references that code resolves at run time). The four task packages of the middle layer do
not import one another: what they share sits below them. A module the table does not place fails the test, so a
new one is placed on purpose.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "mpfpipe"

# (layer, the module prefixes in it); a module belongs to the layer of its longest matching prefix
LAYERS = [
    ("kernels", ["mpfpipe.kernels", "mpfpipe._kernel_cache"]),
    ("engine", ["mpfpipe", "mpfpipe.errors", "mpfpipe.options", "mpfpipe.values", "mpfpipe._json", "mpfpipe._runtime",
                "mpfpipe._stop", "mpfpipe._env", "mpfpipe._reproducible", "mpfpipe._lock", "mpfpipe._safety",
                "mpfpipe._integrity", "mpfpipe._worker_init",
                "mpfpipe.arch", "mpfpipe.layer", "mpfpipe.params", "mpfpipe.loss", "mpfpipe.plan", "mpfpipe.network",
                "mpfpipe.warmup",
                "mpfpipe.fragment", "mpfpipe.volume", "mpfpipe.network3", "mpfpipe.patch", "mpfpipe.model",
                "mpfpipe.cost", "mpfpipe.cluster"]),
    ("data", ["mpfpipe.data"]),
    ("tasks", ["mpfpipe.train", "mpfpipe.segment", "mpfpipe.evaluate", "mpfpipe.export"]),
    ("workflow", ["mpfpipe.workflow", "mpfpipe.bench"]),
    ("cli", ["mpfpipe.cli", "mpfpipe.__main__"]),
]
INDEPENDENT = "tasks"  # the packages of this layer do not import each other
# evaluate refuses a segmentation whose blocks were damaged since it was written (issue 29) with the segmentation
# format's own checksum check, which lives in segment; the output format should move below both. The test fails
# once the import is gone.
KNOWN_CROSS = {("mpfpipe.evaluate.inputs", "mpfpipe.segment.verify")}
_REF = re.compile(r"^(mpfpipe(?:\.\w+)+):\w+$")  # "mpfpipe.data.splits:parse_split", resolved with importlib


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _target(base: str, name: str | None) -> str:
    """The module an import of ``name`` from ``base`` loads: the submodule if there is one, else ``base``."""
    if name and f"{base}.{name}" in MODULES:
        return f"{base}.{name}"
    return base


def imports(module: str) -> set[str]:
    """The mpfpipe modules ``module`` imports (anywhere in it)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] == "mpfpipe":
                out.update(_target(base, a.name) for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "mpfpipe")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _REF.match(node.value):
            out.add(_REF.match(node.value).group(1))
    out.discard(module)
    return {m for m in out if m in MODULES}


def layer_of(module: str) -> tuple[int, str]:
    best = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or (p != "mpfpipe" and module.startswith(p + "."))) and (best is None or
                                                                                     len(p) > len(best[1])):
                best = (i, p)
    if best is None:
        raise LookupError(module)
    return best


def test_every_module_has_a_layer():
    unplaced = sorted(m for m in MODULES if not _placed(m))
    assert not unplaced, f"place these modules in a layer of tests/test_layers.py: {unplaced}"


def _placed(module):
    try:
        layer_of(module)
    except LookupError:
        return False
    return True


def violations() -> list[str]:
    bad = []
    for m in sorted(MODULES):
        if not _placed(m):
            continue
        lm, pm = layer_of(m)
        for t in sorted(imports(m)):
            if not _placed(t):
                continue
            lt, pt = layer_of(t)
            if lt > lm:
                bad.append(f"{m} ({LAYERS[lm][0]}) imports {t} ({LAYERS[lt][0]}): a lower layer imports a higher one")
            elif lt == lm and LAYERS[lm][0] == INDEPENDENT and pt != pm:
                bad.append(f"{m} imports {t}: {pm} and {pt} are independent ({INDEPENDENT} layer)")
    return bad


def test_layers_only_import_downwards():
    known = [f"{m} imports {t}:" for m, t in sorted(KNOWN_CROSS)]
    found = violations()
    assert [v for v in found if not any(v.startswith(k) for k in known)] == []
    for k in known:  # gone: remove it from KNOWN_CROSS
        assert any(v.startswith(k) for v in found), f"{k!r} no longer happens: remove it from KNOWN_CROSS"


def cycles() -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    graph = {m: imports(m) for m in MODULES}
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    assert cycles() == []


@pytest.mark.parametrize("module, source, expect", [
    ("mpfpipe.data.volume", "from ..train import train", "mpfpipe.data.volume (data) imports mpfpipe.train (tasks)"),
    ("mpfpipe.evaluate.metrics", "from ..segment.run import segment",
     "mpfpipe.evaluate.metrics imports mpfpipe.segment.run: mpfpipe.evaluate and mpfpipe.segment are independent"),
    ("mpfpipe.options", 'PARSER = "mpfpipe.train.driver:parse_duration"',
     "mpfpipe.options (engine) imports mpfpipe.train.driver (tasks)"),
    ("mpfpipe.arch", "from .kernels import conv_forward", None),  # downwards: fine
])
def test_the_checker_sees_an_upward_import(monkeypatch, tmp_path, module, source, expect):
    """The checker itself can fail: an import added (inside a function, in a copy of the module) is reported."""
    fake = tmp_path / "m.py"
    fake.write_text(MODULES[module].read_text() + f"\n\ndef _probe():\n    {source}\n")
    monkeypatch.setitem(MODULES, module, fake)
    found = [v for v in violations() if v.startswith(module + " ")]
    assert found == ([] if expect is None else [found[0]]) and (expect is None or found[0].startswith(expect))


def _subpackage(module: str) -> str:
    """mpfpipe.segment.run -> mpfpipe.segment; the top-level modules (mpfpipe._lock, ...) are mpfpipe's own."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 or MODULES[module].name == "__init__.py" else "mpfpipe"


def private_imports() -> set[tuple[str, str]]:
    """(importer, module) pairs where a private name (_x, a module or a name) of another subpackage is imported."""
    found = set()
    for m, path in MODULES.items():
        package = m if path.name == "__init__.py" else m.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ImportFrom) or not (node.level or (node.module or "").startswith("mpfpipe")):
                continue
            parts = package.split(".")
            base = (".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
                    if node.level else node.module)
            for alias in node.names:
                target = _target(base, alias.name)
                if target not in MODULES or _subpackage(target) in ("mpfpipe", _subpackage(m)):
                    continue
                inside = target.split(".")[2:] + ([] if target.endswith("." + alias.name) else [alias.name])
                if any(p.startswith("_") and not p.startswith("__") for p in inside):
                    found.add((m, target))
    return found


def test_no_private_name_is_imported_across_subpackages():
    found = private_imports()
    assert found == set()


def test_the_checker_sees_a_reach_in(monkeypatch, tmp_path):
    fake = tmp_path / "info.py"
    probe = "\n\ndef _probe():\n    from ..segment.folder import _state\n"  # what cli/info.py did before
    fake.write_text(MODULES["mpfpipe.cli.info"].read_text() + probe)
    monkeypatch.setitem(MODULES, "mpfpipe.cli.info", fake)
    assert private_imports() == {("mpfpipe.cli.info", "mpfpipe.segment.folder")}
