"""Done means verified in a run folder: ``run --resume`` skips a step marked done only when its output still
matches its checksums (`mpfpipe.workflow.verify.damaged`); a model damaged since is trained again (from its
checkpoint), a dataset chunk lost since is ingested again."""
from __future__ import annotations

import pytest

from mpfpipe.workflow.verify import damaged
from mpfpipe.cli import main

WF = """name: verify
steps:
  - ingest: {source: 'synthetic:em', n_images: 2, size: 40x40, split: [0.5, 0.5]}
  - train: {net: steel, epochs: 1, optimizer: gd}
"""


def _run(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return exc.value.code, err


def test_resume_redoes_a_step_whose_output_was_damaged(capsys, tmp_path):
    wf = tmp_path / "wf.yaml"
    wf.write_text(WF)
    run = tmp_path / "run"
    code, err = _run(capsys, "run", wf, "--out", run, "--workers", "1", "--no-progress")
    assert code == 0, err
    model = run / "model.safetensors"
    assert damaged(model) == []
    data = bytearray(model.read_bytes())
    data[-3] ^= 0xFF  # a flipped byte in the last tensor
    model.write_bytes(bytes(data))
    assert damaged(model)  # the model file names its damage
    code, err = _run(capsys, "run", wf, "--out", run, "--workers", "1", "--no-progress", "--resume")
    assert code == 0, err
    assert "ingest ingest: done earlier, skipped" in err and "train train -> " in err, err
    assert damaged(model) == []
    chunk = next(p for p in sorted((run / "data" / "ingest.zarr" / "images").rglob("*")) if p.is_file()
                 and p.name != "zarr.json")
    chunk.unlink()  # a lost dataset chunk
    assert damaged(run / "data" / "ingest.zarr")
    code, err = _run(capsys, "run", wf, "--out", run, "--workers", "1", "--no-progress", "--resume")
    assert code == 0, err
    assert "ingest ingest -> " in err and "train train: done earlier, skipped" in err, err
    assert damaged(run / "data" / "ingest.zarr") == []
