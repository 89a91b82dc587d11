"""``train``: the synchronous training loop on the driver (see the package docstring for the protocol)."""
from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import _lock, _reproducible, _safety, _stop
from ..cluster import connect, worker_memory
from ..errors import ClusterError, TrainingError
from ..model import Model, save_model
from ..options import check as check_options
from ..params import init_params, n_params, ravel, unravel
from ..warmup import warm_workers
from .checkpoint import CheckpointWriter, load_checkpoint
from .settings import (augment_spec, build_net, check_labelled, check_resume, class_weights,  # noqa: F401
                       dataset_fingerprint, parse_duration, per_pixel, should_stream)  # some: this module's API
from .chunks import CHUNK_SECONDS
from .oracle import DaskOracle
from .optim import DEFAULT_LR, MINIBATCH, STEPS, OptimConfig, init_state, norm
from .report import append_log, format_summary, plot_losses, write_log

RESUME_FREE = ("epochs", "gtol", "validate_every", "max_time")  # options a resumed run may change


@dataclass
class TrainResult:
    status: str                   # finished | converged | line search failed | time limit | paused | stopped
    x: np.ndarray                 # final parameter vector (float64)
    best_x: np.ndarray | None     # parameters with the lowest validation loss (None without validation)
    records: list
    summary: dict
    text: str                     # the one-screen summary
    files: dict = field(default_factory=dict)


@_lock.locked("out", "training output")
def train(dataset, net="n4", *,
          # what to learn
          maps: int | None = None, hidden: int | None = None, optimizer: str = "gd", epochs: int = 10,
          batch_size: int = 1, lr: float | None = None, lr_halflife: float = 0.0, memory: int = 10,
          balance: bool = True, augment=None, seed: int = 0, dtype: str = "float32", gtol: float = 0.0,
          validate_every: int = 1, train_split: str = "train", val_split: str | None = "val",
          chunk_seconds: float = CHUNK_SECONDS, unit=(4, 128, 128),
          # where to run
          workers: int | None = None, threads: int | None = None, scheduler: str | None = None,
          scheduler_file: str | None = None, host: str = "127.0.0.1", timeout: float = 10.0,
          stream: bool | None = None, client=None, reproducible: bool = False,
          # what to write
          out="model.safetensors", checkpoint=None, log=None, plot=None, resume: bool = False, stop: bool = False,
          overwrite: bool = False, max_steps: int | None = None, max_time=None, progress: bool = True,
          echo=None) -> TrainResult:
    """Train ``net`` on the ``train_split`` images of ``dataset`` (a path or an opened Dataset) with
    ``optimizer`` ("gd", "lbfgs", "sgd", "adam"); write the best model (lowest validation loss; the last one without a
    validation split) to ``out``. One step = one full-batch iteration (= one epoch) for gd/lbfgs, one batch of
    ``batch_size`` images for sgd / adam. ``lr``: Adam's step (default 1e-3), the others' first line-search trial
    step (default 1.0); ``lr_halflife`` (adam): the step halves every that many epochs. A checkpoint is written
    after every step; ``resume=True`` continues from it exactly. ``max_steps`` stops this invocation after that
    many steps (status "paused"). ``max_time`` (seconds, or a string such as "90m", "2h") is a training-time budget
    over the whole run, resumes included: no step is started once it is spent (status "time limit"; the best
    model is written as for a finished run). ``stop`` (with ``resume``): end a paused run where its checkpoint
    is, without another step or a cluster, and write its best model (status "stopped"). ``client``:
    use this Dask client instead of starting / joining a cluster. ``echo``: callable for progress messages.
    ``chunk_seconds``: the estimated one-thread seconds of a gradient task (`chunks`; part of the run's identity,
    since it fixes the summation order). ``reproducible``: the same bits on workers with different CPUs
    (`mpfpipe._reproducible`; switched on for this process and the workers it starts)."""
    from distributed.comm.core import CommClosedError

    from ..data import open_dataset

    v = check_options("train", locals())  # the only check of the declared ranges; its normalised values are used
    epochs, batch_size, memory, lr_halflife, seed, gtol, validate_every, chunk_seconds = (v[k] for k in (
        "epochs", "batch_size", "memory", "lr_halflife", "seed", "gtol", "validate_every", "chunk_seconds"))
    say = echo or (lambda *_: None)
    lr = DEFAULT_LR.get(optimizer, 1.0) if v["lr"] is None else v["lr"]
    ds = open_dataset(dataset) if isinstance(dataset, (str, Path)) else dataset
    inputs = [ds.path, *([net] if isinstance(net, (str, Path)) and Path(net).is_file() else [])]  # + a net file
    net = build_net(net, ds, maps, hidden)
    if net.ndim == 3:  # a 3D net learns from a volume's units (blocks with their halo), read in their tasks
        from ..values import parse_block
        from .units import VolumeUnits
        ds = VolumeUnits(ds, net, parse_block(unit))
        stream = True
    out = Path(out)
    files = {"model": out,
             "checkpoint": Path(checkpoint) if checkpoint else out.with_name(out.stem + ".ckpt.npz"),
             "log": Path(log) if log else out.with_name(out.stem + ".log.jsonl"),
             "plot": Path(plot) if plot else out.with_name(out.stem + ".loss.png")}
    if files["checkpoint"].exists() and not (resume or overwrite):
        raise TrainingError(f"a checkpoint {files['checkpoint']} exists: pass --resume to continue that run or "
                            "--overwrite to start again")
    _safety.check_train_outputs(files, inputs=inputs, overwrite=overwrite, resume=resume)
    train_idx = sorted(ds.split(train_split))
    val_idx = []
    if val_split:
        sizes = ds.split_sizes() if hasattr(ds, "split_sizes") else {}
        if sizes.get(val_split, 1):
            val_idx = sorted(ds.split(val_split))
    check_labelled(ds, {train_split: train_idx, val_split: val_idx})
    spec = augment_spec(augment, net)
    max_time = parse_duration(max_time)
    cfg = OptimConfig(lr=float(lr), memory=int(memory), lr_halflife=float(lr_halflife))
    config = {"dataset": str(Path(ds.path).absolute()), "net": net.to_dict(), "optimizer": optimizer,
              "batch_size": int(batch_size) if optimizer in MINIBATCH else None, "optim": cfg.to_dict(),
              "balance": bool(balance), "augment": spec.to_dict() if spec else None, "seed": int(seed),
              "dtype": np.dtype(dtype).name, "train": train_idx, "val": val_idx, "epochs": int(epochs),
              "gtol": float(gtol), "validate_every": int(validate_every), "max_time": max_time,
              "chunk_seconds": float(chunk_seconds), "inputs": {"dataset": dataset_fingerprint(ds)}}
    if net.ndim == 3:  # only then: the configs of 2D runs keep resuming
        config["unit"] = list(ds.block)
    loaded = load_checkpoint(files["checkpoint"]) if resume else None
    if loaded:
        old = dict(loaded[1]["config"])
        if old.get("augment"):  # written before an option existed: compare with its defaults filled in
            from ..data import AugmentSpec
            old["augment"] = AugmentSpec.from_dict(old["augment"]).to_dict()
        check_resume(old, config, files["checkpoint"], free=RESUME_FREE)
    if stop:  # no cluster: the checkpoint holds everything the model needs
        if not loaded:
            raise TrainingError(f"nothing to stop: no checkpoint {files['checkpoint']} to resume (stop needs "
                                "resume and the checkpoint of a paused run)")
        run = _Run(net, ds, None, optimizer, cfg, config, files, train_idx, val_idx, balance, batch_size, 0, say)
        run.start(loaded)
        return run.finish("stopped", "none (stopped at the checkpoint)", False)

    handle = None
    if reproducible:
        _reproducible.enable()  # before connect: the workers it starts inherit the mode
    if client is None:
        handle = connect(workers=workers, threads=threads, scheduler=scheduler, scheduler_file=scheduler_file,
                         host=host, timeout=timeout)
        client = handle.client
        where = "local cluster" if handle.cluster is not None else f"scheduler {handle.address}"
        say(f"cluster: {where}, {handle.workers} worker(s) x {handle.threads or '?'} thread(s)"
            + (f"; dashboard {handle.dashboard}" if handle.dashboard
               else "; dashboard off (pip install 'bokeh>=3.1' to get one)"))
    n_workers = max(1, len(client.scheduler_info(n_workers=-1)["workers"]))
    if (pool := _reproducible.check_pool(client, reproducible)):
        say(f"cpus: {pool}")
    cluster_desc = (f"{n_workers} worker(s)" + (f" x {handle.threads} thread(s)" if handle and handle.threads else "")
                    + (f", {'local' if handle.cluster is not None else handle.address}" if handle else ", client"))
    try:
        if stream is None:
            stream = should_stream(ds, train_idx + val_idx, worker_memory(client))
            if stream:
                say("data: larger than a quarter of the workers' memory, every task reads its image from Zarr")
        oracle = DaskOracle(client, net, ds, augment=spec, seed=seed, dtype=dtype, stream=stream,
                            chunk_seconds=config["chunk_seconds"])
        warm = warm_workers(client, net, dtype)  # before the first step, the workers sharing the compiling out
        if warm["compiled"]:
            say(f"kernels: compiled {len(warm['compiled'])} kernel group(s) into the cache in {warm['seconds']:.1f} s "
                "(once per machine; `mpfpipe warmup` does it ahead of time)")
        t0 = time.perf_counter()
        oracle.hold(train_idx)  # the train and validation images in blocks of their own: the chunk plan
        oracle.hold(val_idx)
        if not stream:
            say(f"data: {len(train_idx) + len(val_idx)} image(s) read and held on the workers in "
                f"{time.perf_counter() - t0:.1f} s")
        run = _Run(net, ds, oracle, optimizer, cfg, config, files, train_idx, val_idx, balance, batch_size,
                   n_workers, say)
        run.start(loaded)
        status = run.loop(max_steps, progress)
        oracle.close()
    except (ConnectionError, TimeoutError, CommClosedError) as exc:
        raise ClusterError(f"lost the Dask cluster ({type(exc).__name__}: {exc}); the checkpoint "
                           f"{files['checkpoint']} is intact: rerun with --resume") from None
    except ClusterError as exc:
        raise ClusterError(f"{exc}; the checkpoint {files['checkpoint']} is intact: rerun with --resume") from None
    finally:
        if handle is not None:
            handle.close()
    return run.finish(status, cluster_desc, stream)


class _Run:
    """The state of one training run between checkpoints."""

    def __init__(self, net, ds, oracle, optimizer, cfg, config, files, train_idx, val_idx, balance, batch_size,
                 n_workers, say):
        self.net, self.ds, self.oracle, self.opt, self.cfg = net, ds, oracle, optimizer, cfg
        self.config, self.files, self.train_idx, self.val_idx = config, files, train_idx, val_idx
        self.balance, self.batch_size, self.n_workers, self.say = balance, int(batch_size), n_workers, say
        self.augmenting = oracle is not None and oracle.spec is not None
        self.epochs = config["epochs"]

    # -- state ------------------------------------------------------------------------------------------
    def start(self, loaded):
        self.t_start = time.perf_counter()
        self.writer = CheckpointWriter()
        if loaded is None:
            x0 = ravel(self.net, init_params(self.net, self.config["seed"]))
            self.state = init_state(x0, self.cfg)
            self.meta = {"step": 0, "epoch": 0, "batch": 0, "perm_epoch": -1, "records": [], "status": "running",
                         "initial_loss": None, "best_val_loss": None, "best_val_error": None, "best_epoch": None,
                         "evaluations": 0, "timing": {"wall": 0.0, "compute": 0.0, "overhead": 0.0,
                                                      "checkpoint": 0.0}}
            self.rng = np.random.default_rng([self.config["seed"], 1])
            self.best_x, self.perm = None, None
        else:
            arrays, meta = loaded
            st = meta["optim_state"]
            n = n_params(self.net)
            self.state = {"x": arrays["x"], "f": st["f"], "g": arrays.get("g"), "fkey": st["fkey"],
                          "alpha": st["alpha"], "S": arrays.get("S", np.zeros((0, n))),
                          "Y": arrays.get("Y", np.zeros((0, n))), "m": arrays.get("m"), "v": arrays.get("v"),
                          "t": st.get("t", 0)}
            self.meta = {k: v for k, v in meta.items() if k not in ("optim_state", "rng", "config", "format",
                                                                   "version")}
            self.rng = np.random.default_rng()
            self.rng.bit_generator.state = meta["rng"]
            self.best_x, self.perm = arrays.get("best_x"), arrays.get("perm")
            self.say(f"resuming {self.files['checkpoint']} at step {self.meta['step']}")
        self.meta["status"] = "running"
        self.meta["config"] = self.config
        write_log(self.files["log"], self.meta["records"])

    def save(self, final: bool = False):
        t0 = time.perf_counter()
        st = self.state
        arrays = {"x": st["x"], "g": st["g"], "S": st["S"], "Y": st["Y"], "m": st["m"], "v": st["v"],
                  "best_x": self.best_x, "perm": self.perm}
        meta = dict(self.meta)
        meta["optim_state"] = {"f": st["f"], "fkey": st["fkey"], "alpha": st["alpha"], "t": st["t"]}
        meta["rng"] = self.rng.bit_generator.state
        self.writer.submit(self.files["checkpoint"], arrays, meta)  # written while the next step computes
        if final:
            self.writer.wait()
        self.meta["timing"]["checkpoint"] += time.perf_counter() - t0

    # -- objective --------------------------------------------------------------------------------------
    def objective(self, indices, epoch, stats):
        # balanced weights need the batch's class counts first (count tasks); the plain mean loss does not
        w = class_weights(self.oracle.class_counts(indices, epoch), True) if self.balance else None

        def fg(x, need_grad):
            if w is None:  # unit weights, then divided by the labelled pixels the same tasks counted
                e = per_pixel(self.oracle.evaluate(x, indices, np.ones(self.net.n_classes), epoch, need_grad))
            else:
                e = self.oracle.evaluate(x, indices, w, epoch, need_grad)
            stats.append(e)
            return e.loss, e.grad
        return fg

    def validate(self, x, stats):
        counts = self.oracle.class_counts(self.val_idx, 0, augment=False)
        e = self.oracle.evaluate(x, self.val_idx, class_weights(counts, self.balance), 0, grad=False,
                                 augment=False)
        stats.append(e)
        return e.loss, e.pixel_error, e.balanced_error

    # -- loop -------------------------------------------------------------------------------------------
    def total_steps(self):
        if self.opt in MINIBATCH:
            return self.epochs * -(-len(self.train_idx) // self.batch_size)
        return self.epochs

    def loop(self, max_steps, progress) -> str:
        from tqdm.auto import tqdm

        m = self.meta
        done_here = 0
        bar = tqdm(total=self.total_steps(), initial=min(m["step"], self.total_steps()), disable=not progress,
                   desc=f"train {self.opt}", unit="step", leave=False)
        status = "finished"
        try:
            while m["epoch"] < self.epochs:
                _stop.check()
                if max_steps is not None and done_here >= max_steps:
                    status = "paused"
                    break
                limit = self.config.get("max_time")
                if limit is not None and m["timing"]["wall"] >= limit:
                    status = "time limit"
                    break
                rec = self.step()
                done_here += 1
                bar.update(1)
                bar.set_postfix(loss=f"{rec['loss']:.4g}", **({"val": f"{rec['val_loss']:.4g}"}
                                                             if rec.get("val_loss") is not None else {}))
                if rec.get("stop"):
                    status = rec["stop"]
                    break
        except BaseException:
            with contextlib.suppress(Exception):  # the last checkpoint on disk before the error is reported
                self.writer.wait()
            raise
        finally:
            bar.close()
        m["status"] = status
        self.save(final=True)
        return status

    def step(self) -> dict:
        m, st = self.meta, self.state
        t0 = time.perf_counter()
        stats = []
        epoch = m["epoch"]
        if self.opt in MINIBATCH:
            if self.perm is None or m["perm_epoch"] != epoch:
                self.perm = self.rng.permutation(np.asarray(self.train_idx, np.int64))
                m["perm_epoch"], m["batch"] = epoch, 0
            j = m["batch"]
            batch = sorted(int(i) for i in self.perm[j * self.batch_size:(j + 1) * self.batch_size])
            end_of_epoch = (j + 1) * self.batch_size >= len(self.perm)
        else:
            batch, j, end_of_epoch = self.train_idx, None, True
        fg = self.objective(batch, epoch, stats)
        if self.opt not in MINIBATCH:
            fkey = epoch if self.augmenting else 0
            if st["f"] is None or st["fkey"] != fkey:
                st["f"], st["g"] = fg(st["x"], True)
                st["fkey"] = fkey
        cfg = dataclasses.replace(self.cfg, lr=self.cfg.adam_lr(epoch)) if self.opt == "adam" else self.cfg
        info = STEPS[self.opt](st, fg, cfg)
        if m["initial_loss"] is None:
            m["initial_loss"] = info.loss_before
        rec = {"step": m["step"] + 1, "epoch": epoch, "batch": j, "images": len(batch),
               "loss_before": info.loss_before, "loss": info.loss, "grad_norm": info.grad_norm,
               "step_size": info.step_size, "ls_evals": info.evals, "evals": len(stats), "accepted": info.ok}
        if info.extra:
            rec.update(info.extra)
        if info.note:
            rec["note"] = info.note
        if end_of_epoch:
            if self.val_idx and ((epoch + 1) % self.config["validate_every"] == 0 or epoch + 1 == self.epochs):
                vl, ve, vb = self.validate(st["x"], stats)
                rec["val_loss"], rec["val_error"], rec["val_balanced_error"] = vl, ve, vb
                rec["best"] = m["best_val_loss"] is None or vl < m["best_val_loss"]
                if rec["best"]:
                    m["best_val_loss"], m["best_val_error"], m["best_epoch"] = vl, ve, epoch + 1
                    m["best_val_balanced_error"] = vb
                    self.best_x = st["x"].copy()
            m["epoch"] = epoch + 1
            m["batch"] = 0
        else:
            m["batch"] = j + 1
        m["step"] += 1
        m["evaluations"] += len(stats)
        if self.opt not in MINIBATCH:
            if not info.ok:
                rec["stop"] = "line search failed"
            elif self.config["gtol"] > 0 and norm(st["g"]) < self.config["gtol"]:
                rec["stop"] = "converged"
        wall = time.perf_counter() - t0
        compute = sum(e.task_seconds / max(1, min(self.n_workers, e.n_tasks)) for e in stats)
        rec["seconds"] = {"total": wall, "compute": compute, "overhead": max(0.0, wall - compute)}
        for k in ("compute", "overhead"):
            m["timing"][k] += rec["seconds"][k]
        m["timing"]["wall"] += wall
        m["records"].append(rec)
        self.save()
        append_log(self.files["log"], rec)
        return rec

    # -- end --------------------------------------------------------------------------------------------
    def finish(self, status, cluster_desc, stream) -> TrainResult:
        m, st = self.meta, self.state
        recs = m["records"]
        last_val = next((r["val_loss"] for r in reversed(recs) if r.get("val_loss") is not None), None)
        summary = {"status": status, "steps": m["step"], "epochs_done": m["epoch"], "net": self.net.describe(),
                   "n_params": n_params(self.net), "dataset": self.config["dataset"],
                   "n_train": len(self.train_idx), "n_val": len(self.val_idx), "stream": bool(stream),
                   **({"unit": self.config["unit"]} if "unit" in self.config else {}),  # 3D runs only
                   "augment": self.config["augment"], "cluster": cluster_desc, "optimizer": self.opt,
                   "batch_size": self.batch_size, "balance": self.balance, "evaluations": m["evaluations"],
                   "initial_loss": m["initial_loss"], "final_loss": recs[-1]["loss"] if recs else None,
                   "best_val_loss": m["best_val_loss"], "best_val_error": m["best_val_error"],
                   "best_val_balanced_error": m.get("best_val_balanced_error"),
                   "best_epoch": m["best_epoch"], "last_val_loss": last_val, "timing": dict(m["timing"]),
                   "seed": self.config["seed"], "options": {k: self.config[k] for k in
                                                            ("optim", "dtype", "epochs", "batch_size", "seed")},
                   "files": {}}
        files = dict(self.files)
        if status != "paused":
            vec = self.best_x if self.best_x is not None else st["x"]
            prov = {"training": {k: v for k, v in summary.items() if k != "files"},
                    "input_dtype": np.dtype(self.ds.dtype).name}  # segmentation refuses other dtypes
            model = Model(self.net, unravel(self.net, vec, np.float32), list(self.ds.class_names),
                          dict(self.ds.normalisation), ignore_index=int(self.ds.ignore_index), provenance=prov,
                          downsample=int(self.ds.attrs.get("downsample") or 1),  # new images get the same
                          section_context=int((self.ds.attrs.get("section_context") or {}).get("sections", 0)))
            save_model(model, files["model"], overwrite=True)
        else:
            files.pop("model")
        if recs:
            plot_losses(files["plot"], recs, f"{self.net.name} / {self.opt}: {Path(self.config['dataset']).name}")
        else:
            files.pop("plot")
        summary["files"] = {k: str(v) for k, v in files.items()}
        return TrainResult(status, st["x"].copy(), None if self.best_x is None else self.best_x.copy(), recs,
                           summary, format_summary(summary), files)
