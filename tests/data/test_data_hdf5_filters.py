"""An HDF5 dataset compressed with a filter that is not installed is refused where it enters, in one line naming
the dataset and the filter, by every command that reads HDF5 (segment, ingest, evaluate), instead of HDF5's "can't
read data" from inside a block task. The file is written by a child process that has the filter (hdf5plugin's
Blosc); the commands run in another child process that does not import it, as a user's machine would."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("hdf5plugin")

WRITE = ("import sys, h5py, hdf5plugin, numpy as np\n"
         "with h5py.File(sys.argv[1], 'w') as f:\n"
         "    f.create_dataset('raw', data=np.arange(2 * 40 * 40, dtype=np.uint16).reshape(2, 40, 40) % 251, "
         "chunks=(1, 40, 40), **hdf5plugin.Blosc())\n")
CLI = "import sys; from mpfpipe.cli import main; main(sys.argv[1:])"


def _cli(*argv):
    return subprocess.run([sys.executable, "-c", CLI, *map(str, argv)], capture_output=True, text=True, timeout=300)


def test_missing_filter_is_named_by_every_reader(tmp_path):
    from mpfpipe.arch import preset
    from mpfpipe.model import Model, save_model
    from mpfpipe.params import init_params

    h5 = tmp_path / "blosc.h5"
    subprocess.run([sys.executable, "-c", WRITE, str(h5)], check=True, timeout=120)
    net = preset("steel", maps=2, hidden=4)
    save_model(Model(net, init_params(net, 0), normalisation={"mean": [128.0], "std": [50.0]}),
               tmp_path / "m.safetensors")
    np.save(tmp_path / "p.npy", np.full((2, 40, 40), 0.5, np.float32))
    np.save(tmp_path / "labels.npy", np.zeros((2, 40, 40), np.uint8))
    runs = [_cli("segment", tmp_path / "m.safetensors", f"{h5}:raw", tmp_path / "s.zarr", "--workers", "0", "--quiet"),
            _cli("ingest", f"{h5}:raw", tmp_path / "labels.npy", tmp_path / "d.zarr", "--no-progress"),
            _cli("evaluate", tmp_path / "p.npy", f"{h5}:raw")]
    for r in runs:
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and len(lines) == 1, r.stderr
        assert lines[0] == (f"error: {h5}:raw is compressed with the HDF5 filter 32001 (blosc), which is not installed "
                            "here: install its plugin (e.g. pip install hdf5plugin and import it, or set "
                            "HDF5_PLUGIN_PATH) or rewrite the dataset without it"), lines[0]
    assert not (tmp_path / "s.zarr").exists() and not (tmp_path / "d.zarr").exists()
