"""What a user sees of a training run (mpfpipe.train.report): the JSON-lines log, the loss-curve PNG, the summary."""
from __future__ import annotations

import json

from PIL import Image

from mpfpipe.train.report import append_log, format_summary, plot_losses, write_log

RECORDS = [{"step": 1, "loss": 0.7, "val_loss": None}, {"step": 2, "loss": 0.5, "val_loss": 0.6, "val_error": 0.25},
           {"step": 3, "loss": 0.4, "val_loss": 0.55, "val_error": 0.2}]


def test_the_log_is_rewritten_then_appended(tmp_path):
    log = tmp_path / "sub" / "m.log.jsonl"
    write_log(log, RECORDS[:2])
    append_log(log, RECORDS[2])
    assert [json.loads(line) for line in log.read_text().splitlines()] == RECORDS
    write_log(log, RECORDS[:1])  # a resume: the checkpoint's records are the truth
    assert [json.loads(line) for line in log.read_text().splitlines()] == RECORDS[:1]
    assert sorted(p.name for p in log.parent.iterdir()) == ["m.log.jsonl"]  # no temporary file left


def test_the_plot_is_a_png_marked_as_ours(tmp_path):
    assert plot_losses(tmp_path / "none.png", []) is None and not (tmp_path / "none.png").exists()
    path = plot_losses(tmp_path / "m.loss.png", RECORDS, "steel / lbfgs")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (700, 420) and im.info.get("Software") == "mpfpipe"


def _summary(**kw):
    s = {"status": "done", "steps": 3, "epochs_done": 3, "timing": {"wall": 12.25, "compute": 10.0, "overhead": 1.5,
                                                                      "checkpoint": 0.25},
         "net": "steel", "n_params": 1066, "dataset": "d.zarr", "n_train": 4, "n_val": 2, "stream": False,
         "augment": True, "cluster": "2 worker(s) x 1 thread(s), local", "optimizer": "sgd", "batch_size": 2,
         "evaluations": 7, "balance": True, "initial_loss": 0.7, "final_loss": 0.4, "best_val_loss": 0.55,
         "best_epoch": 3, "best_val_error": 0.2, "best_val_balanced_error": None, "last_val_loss": 0.55,
         "files": {"model": "m.safetensors", "checkpoint": None, "log": "m.log.jsonl", "plot": None}}
    s.update(kw)
    return s


def test_the_summary_text():
    assert format_summary(_summary()).splitlines() == [
        "mpfpipe train: done after 3 step(s), 3 epoch(s), in 12.2 s",
        "  net         steel (1066 parameters)",
        "  data        d.zarr: 4 train / 2 val image(s), held on the workers, augmented",
        "  cluster     2 worker(s) x 1 thread(s), local",
        "  optimizer   sgd (batch 2), 7 loss evaluations, class weights balanced",
        "  train loss  0.7 -> 0.4",
        "  validation  best loss 0.55 at epoch 3, pixel error 20.00 % (last: 0.55)",
        "  time        compute 10.0 s, overhead 1.5 s (15.0 % of compute), checkpoints 0.2 s",
        "  model       m.safetensors",
        "  log         m.log.jsonl"]
    paused = format_summary(_summary(status="paused", optimizer="lbfgs", best_val_loss=None, stream=True))
    assert "  optimizer   lbfgs, 7 loss" in paused and "streamed from Zarr" in paused and "validation" not in paused
    assert paused.endswith("  resume with --resume (same options) to continue")
