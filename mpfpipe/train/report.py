"""What a user sees of a training run: the JSON-lines log, the loss-curve PNG and the end-of-run summary."""
from __future__ import annotations

import json
import os
from pathlib import Path

from .optim import MINIBATCH


def write_log(path, records) -> None:
    """Rewrite the whole JSON-lines log (on start / resume: the checkpoint's records are the truth)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
    os.replace(tmp, path)


def append_log(path, record) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def plot_losses(path, records, title: str = "") -> Path | None:
    """Training loss per step and validation loss per epoch (log scale when positive), as a PNG. Uses the Agg
    canvas directly, so no global matplotlib backend is changed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps = [r["step"] for r in records]
    if not steps:
        return None
    fig = Figure(figsize=(7, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(steps, [r["loss"] for r in records], lw=1.2, label="train loss (batch)")
    val = [(r["step"], r["val_loss"]) for r in records if r.get("val_loss") is not None]
    if val:
        ax.plot(*zip(*val), "o-", ms=3, lw=1.2, label="validation loss")
        ax2 = ax.twinx()
        ax2.plot([s for s, _ in val], [100 * r["val_error"] for r in records if r.get("val_loss") is not None],
                 "s--", ms=3, lw=0.8, color="tab:green", label="validation pixel error")
        ax2.set_ylabel("validation pixel error (%)")
        ax2.legend(loc="upper center", fontsize=8)
    losses = [r["loss"] for r in records] + [v for _, v in val]
    if min(losses) > 0:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (mean per labelled pixel, class-weighted)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, metadata={"Software": "mpfpipe"})  # how --overwrite recognises our plot
    os.replace(tmp, path)
    return path


def _fmt(v, spec=".4g"):
    return "-" if v is None else format(v, spec)


def format_summary(s: dict) -> str:
    """One screen of text from the summary dict built by the driver."""
    t = s["timing"]
    share = 100.0 * t["overhead"] / t["compute"] if t["compute"] > 0 else float("nan")
    lines = [
        f"mpfpipe train: {s['status']} after {s['steps']} step(s), {s['epochs_done']} epoch(s), "
        f"in {t['wall']:.1f} s",
        f"  net         {s['net']} ({s['n_params']} parameters)",
        f"  data        {s['dataset']}: {s['n_train']} train / {s['n_val']} val "
        f"{'volume unit(s) (blocks with their halo)' if s.get('unit') else 'image(s)'}, "
        f"{'streamed from Zarr' if s['stream'] else 'held on the workers'}"
        f"{', augmented' if s['augment'] else ''}",
        f"  cluster     {s['cluster']}",
        f"  optimizer   {s['optimizer']}{' (batch %d)' % s['batch_size'] if s['optimizer'] in MINIBATCH else ''}, "
        f"{s['evaluations']} loss evaluations, class weights {'balanced' if s['balance'] else 'mean'}",
        f"  train loss  {_fmt(s['initial_loss'])} -> {_fmt(s['final_loss'])}",
    ]
    if s.get("best_val_loss") is not None:
        lines.append(f"  validation  best loss {_fmt(s['best_val_loss'])} at epoch {s['best_epoch']}, pixel error "
                     f"{_fmt(100 * s['best_val_error'], '.2f')} %"
                     + (f", balanced error {_fmt(100 * s['best_val_balanced_error'], '.2f')} %"
                        if s.get("best_val_balanced_error") is not None else "")
                     + f" (last: {_fmt(s['last_val_loss'])})")
    lines.append(f"  time        compute {t['compute']:.1f} s, overhead {t['overhead']:.1f} s "
                 f"({share:.1f} % of compute), checkpoints {t['checkpoint']:.1f} s")
    for key in ("model", "checkpoint", "log", "plot"):
        if s.get("files", {}).get(key):
            lines.append(f"  {key:<11} {s['files'][key]}")
    if s["status"] == "paused":
        lines.append("  resume with --resume (same options) to continue")
    return "\n".join(lines)
