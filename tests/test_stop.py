"""A stop asked for by the CLI's signal handler is never lost: the training loop sees the flag at its next step
even when the handler's KeyboardInterrupt was dropped (raised inside a finaliser)."""
from __future__ import annotations

import json

import pytest

from mpfpipe import _stop


def test_check_raises_only_after_a_request(monkeypatch):
    monkeypatch.setattr(_stop, "_requested", False)
    _stop.check()
    _stop.request()
    with pytest.raises(KeyboardInterrupt):
        _stop.check()


def test_training_loop_stops_at_a_requested_stop(monkeypatch, tmp_path):
    from mpfpipe.data import synth_em
    from mpfpipe.train import driver, train
    data = synth_em(tmp_path / "d.zarr", n_images=2, size=(40, 40))
    real_step = driver._Run.step

    def step_then_signal(self):  # a signal whose KeyboardInterrupt was dropped: only the flag is left
        rec = real_step(self)
        _stop.request()
        return rec

    monkeypatch.setattr(_stop, "_requested", False)
    monkeypatch.setattr(driver._Run, "step", step_then_signal)
    with pytest.raises(KeyboardInterrupt):
        train(data, "steel", maps=2, hidden=4, optimizer="gd", epochs=50, workers=1, threads=1, progress=False,
              out=tmp_path / "m.safetensors")
    steps = [json.loads(ln) for ln in (tmp_path / "m.log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps if "step" in r] == [1]  # stopped before the second of 50 steps
