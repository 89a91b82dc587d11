"""The installed package: lazy subpackages, py.typed, license metadata, declared dependencies."""
from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import mpfpipe


def test_subpackages_load_on_attribute_access():
    code = ("import sys, mpfpipe; assert 'mpfpipe.train' not in sys.modules; "
            "assert callable(mpfpipe.train.train) and callable(mpfpipe.evaluate.evaluate); "
            "assert mpfpipe.segment.segment and mpfpipe.data and mpfpipe.arch.preset('steel').window == 34; "
            "assert 'train' in dir(mpfpipe)\n"
            "try:\n    mpfpipe.nope\nexcept AttributeError as e:\n    assert 'nope' in str(e)\n"
            "else:\n    raise SystemExit('no AttributeError')")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_py_typed_and_license_are_shipped():
    assert (Path(mpfpipe.__file__).parent / "py.typed").is_file()
    meta = metadata.metadata("mpfpipe")
    assert meta.get("License-Expression") == "BSD-3-Clause"
    root = Path(__file__).resolve().parents[1]
    assert "BSD 3-Clause" in (root / "LICENSE").read_text()


def test_no_undeclared_or_unused_runtime_dependencies():
    reqs = {r.split(";")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower()
            for r in metadata.requires("mpfpipe") if "extra ==" not in r}
    src = "\n".join(p.read_text() for p in Path(mpfpipe.__file__).parent.rglob("*.py"))
    imports = {"pillow": "PIL", "pyyaml": "yaml", "scikit-image": "skimage"}
    for req in reqs:
        mod = imports.get(req, req.replace("-", "_"))
        assert f"import {mod}" in src or f"from {mod}" in src, f"{req} is declared but never imported"
    assert "imageio" not in reqs and "ome-zarr" not in reqs
