"""Running a workflow: the run folder, resume/overwrite, the step loop and the summary."""
from __future__ import annotations

import datetime as _dt
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .. import __version__, _lock, _safety
from .verify import damaged
from ..errors import OutputExistsError
from ._io import _write_json
from .spec import Step, Workflow, WorkflowError, load_workflow, plan
from .steps import RUNNERS


def _state_path(run_dir: Path) -> Path:
    return run_dir / "workflow.json"


def _prepare_run_dir(run_dir: Path, wf: Workflow, steps, overwrite: bool, resume: bool) -> dict:
    if overwrite and resume:
        raise WorkflowError("give either --resume or --overwrite, not both")
    state_file = _state_path(run_dir)
    resolved = {"params": wf.params, "steps": [{"kind": s.kind, "id": s.id, "options": s.options} for s in steps]}
    ours = {s.outputs["main"] for s in steps}  # what the steps write; anything else they read is the user's
    inputs = [wf.path]
    for s in steps:
        inputs += [*s.inputs.values(), *(s.options.get("source") or [] if s.kind == "ingest" else [])]
    _safety.check_outputs([("run folder", run_dir, ("run",))], inputs=[p for p in inputs if Path(p) not in ours],
                          overwrite=True)
    if _safety.recognise(run_dir) == "run" and not state_file.is_file():  # a claimed leftover: nothing to keep
        _safety.remove(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()):
        if not state_file.is_file():
            raise OutputExistsError(f"{run_dir} exists and is not an mpfpipe run folder (no workflow.json); choose "
                                "another --out")
        if overwrite:
            for child in run_dir.iterdir():
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        elif resume:
            try:
                state = json.loads(state_file.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise OutputExistsError(f"{state_file} is unreadable ({exc}); use --overwrite to start again") from None
            old = state.get("resolved", {})
            if json.loads(json.dumps(old, default=str)) != json.loads(json.dumps(resolved, default=str)):
                diff = sorted(k for k in set(old.get("params", {})) | set(wf.params)
                              if old.get("params", {}).get(k) != wf.params.get(k))
                raise OutputExistsError(f"cannot resume {run_dir}: it was run with different "
                                    + (f"parameters ({', '.join(diff)})" if diff else "steps")
                                    + "; use --overwrite or another --out")
            state["runs"] = state.get("runs", 0) + 1
            return state
        else:
            raise OutputExistsError(f"run folder {run_dir} exists; pass --resume to continue it (finished steps are "
                                "skipped) or --overwrite to start again")
    _safety.claim(run_dir, "run")  # ours from now on, even if workflow.json cannot be written (a full disk)
    return {"format": "mpfpipe-run", "mpfpipe_version": __version__, "workflow": wf.to_dict(),
            "resolved": resolved, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "runs": 1, "steps": {}}


@dataclass
class _Ctx:
    client: object
    scheduler: str | None
    workers: int | None
    progress: bool
    say: object


def _step_done(step: Step, state: dict) -> bool:
    """Done, and its output still intact: a step whose output was damaged since (`verify.damaged`) runs again."""
    if state.get("steps", {}).get(step.id, {}).get("status") != "done":
        return False
    return step.outputs["main"].exists() and not damaged(step.outputs["main"])


def _run_dir_of(a: dict) -> Path:
    return Path(a["out"]) if a["out"] else Path("runs") / load_workflow(a["path"], a["sets"]).name


@_lock.locked(_run_dir_of, "run folder", skip=lambda a: a["dry_run"])
def run_workflow(path, sets=None, *, out=None, scheduler: str | None = None, scheduler_file: str | None = None,
                 workers: int | None = None, threads: int | None = None, overwrite: bool = False,
                 resume: bool = False, progress: bool = True, echo=None, dry_run: bool = False) -> dict:
    """Run the workflow file ``path`` into the run folder ``out`` (default ``runs/<name>``); see the module doc.
    Returns the summary dict (also written to ``summary.json`` / ``summary.md``)."""
    say = echo or (lambda *_: None)
    wf = load_workflow(path, sets)
    run_dir = Path(out) if out else Path("runs") / wf.name
    steps = plan(wf, run_dir)
    if dry_run:
        return {"workflow": wf.to_dict(), "run_dir": str(run_dir),
                "steps": [{"step": s.index, "kind": s.kind, "id": s.id, "options": s.options,
                           "inputs": {k: str(v) for k, v in s.inputs.items()},
                           "outputs": {k: str(v) for k, v in s.outputs.items()}} for s in steps]}
    if scheduler and scheduler_file:
        raise WorkflowError("give either --scheduler or --scheduler-file, not both")
    state = _prepare_run_dir(run_dir, wf, steps, overwrite, resume)
    _write_json(_state_path(run_dir), state)
    _safety.release(run_dir)

    from ..cluster import connect
    t_start = time.perf_counter()
    handle = None
    results = {}
    try:
        needs_cluster = any(s.kind in ("train", "segment") and not _step_done(s, state) for s in steps)
        if needs_cluster:
            handle = connect(workers=workers, threads=threads, scheduler=scheduler,
                             scheduler_file=scheduler_file)
            where = "local cluster" if handle.cluster is not None else f"scheduler {handle.address}"
            say(f"cluster: {where}, {handle.workers} worker(s)"
                + (f" x {handle.threads} thread(s)" if handle.threads else ""))
        # segment joins the same cluster by address (scheduler file for an external one given as a file)
        seg_sched = scheduler_file or (handle.address if handle is not None else None)
        ctx = _Ctx(handle.client if handle else None, seg_sched, workers, progress, say)
        for s in steps:
            rec = state["steps"].setdefault(s.id, {})
            if resume and _step_done(s, state):
                say(f"[{s.index}/{len(steps)}] {s.kind} {s.id}: done earlier, skipped")
                results[s.id] = rec.get("result", {})
                continue
            say(f"[{s.index}/{len(steps)}] {s.kind} {s.id} -> {s.outputs['main']}")
            t0 = time.perf_counter()
            rec.update(status="running", kind=s.kind)
            _write_json(_state_path(run_dir), state)
            try:
                result = RUNNERS[s.kind](s, ctx)
            except BaseException:
                rec["status"] = "failed"
                _write_json(_state_path(run_dir), state)
                raise
            rec.update(status="done", seconds=time.perf_counter() - t0, result=result)
            results[s.id] = result
            _write_json(_state_path(run_dir), state)
    finally:
        if handle is not None:
            handle.close()
    summary = {"workflow": wf.name, "file": str(wf.path), "run_dir": str(run_dir), "params": wf.params,
               "mpfpipe_version": __version__,
               "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
               "seconds": time.perf_counter() - t_start,
               "steps": [{"step": s.index, "kind": s.kind, "id": s.id,
                          "seconds": state["steps"][s.id].get("seconds"), "result": results.get(s.id)}
                         for s in steps]}
    _write_json(run_dir / "summary.json", summary)
    (run_dir / "summary.md").write_text(summary_markdown(summary))
    return summary


def _fmt(v, pct=False):
    if v is None:
        return "n/a"
    if pct:
        return f"{100 * v:.2f} %"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def summary_markdown(s: dict) -> str:
    lines = [f"# mpfpipe run: {s['workflow']}", "",
             f"Workflow `{s['file']}`, run folder `{s['run_dir']}`, mpfpipe {s['mpfpipe_version']}, "
             f"finished {s['finished']}; this invocation took {s['seconds']:.1f} s.", "",
             "Parameters: " + ", ".join(f"`{k}={v}`" for k, v in s["params"].items()), "",
             "| step | kind | id | seconds | result |", "| ---: | --- | --- | ---: | --- |"]
    for st in s["steps"]:
        r = st.get("result") or {}
        if st["kind"] == "ingest":
            txt = f"{r.get('images')} images, splits {r.get('splits')}"
        elif st["kind"] == "train":
            txt = (f"{r.get('status')}, {r.get('steps')} steps, loss {_fmt(r.get('initial_loss'))} -> "
                   f"{_fmt(r.get('final_loss'))}, best val pixel error {_fmt(r.get('best_val_error'), True)}")
            if r.get("best_val_balanced_error") is not None:
                txt += f" (balanced {_fmt(r['best_val_balanced_error'], True)})"
        elif st["kind"] == "segment":
            txt = f"{r.get('blocks')} blocks ({r.get('skipped')} skipped), {_fmt(r.get('voxels_per_s'))} voxels/s"
        else:
            rand = r.get("rand") or {}
            fpe = (r.get("isbi_pixel_error") or {}).get("pixel_error")
            txt = f"{r.get('n_images')} images: pixel error {_fmt(r.get('pixel_error'), True)}"
            if rand:  # the ISBI 2012 membrane metrics (an evaluate step with rand: false skips them)
                txt += (f" (1 - max F-score: {_fmt(fpe, True)}), V_rand {_fmt(rand.get('v_rand'))}"
                        f" (threshold {_fmt(rand.get('best_threshold'))})")
                isbi, voi = r.get("isbi2012") or {}, r.get("voi") or {}
                if isbi:  # the challenge's ranking scores (after thinning) and the variation of information
                    txt += (f", thinned V_rand {_fmt(isbi.get('v_rand_thinned'))}, V_info "
                            f"{_fmt(isbi.get('v_info_thinned'))}, VOI split / merge {_fmt(voi.get('split'))} / "
                            f"{_fmt(voi.get('merge'))}")
            inst = r.get("instances")
            if inst:  # the instance segmentation beside the thresholded map
                txt += (f"; instances: thinned V_rand {_fmt(inst.get('v_rand_thinned'))}, V_info "
                        f"{_fmt(inst.get('v_info_thinned'))}, ARAND {_fmt(inst.get('arand'))}, VOI split / merge "
                        f"{_fmt(inst.get('voi_split'))} / {_fmt(inst.get('voi_merge'))}")
                low = min(inst.get("sections") or (), key=lambda q: q["v_rand_thinned"], default=None)
                if low is not None and len(inst["sections"]) > 1:  # the section that holds the mean down most
                    txt += (f" (lowest: section {low['index']}, thinned V_rand {_fmt(low['v_rand_thinned'])}, "
                            f"split / merge {_fmt(low['rand_split'])} / {_fmt(low['rand_merge'])})")
            bal = (r.get("balanced_error") or {}).get("error")
            if not rand and bal is not None:
                txt += f", balanced error {_fmt(bal, True)}"
            txt += f", mean IoU {_fmt(r.get('mean_iou'))}"
            det = r.get("detection")
            if det:
                txt += f", detection error {_fmt(det.get('error'), True)} on {det.get('evaluated_on')}"
        secs = st.get("seconds")
        lines.append(f"| {st['step']} | {st['kind']} | {st['id']} | {'skipped' if secs is None else f'{secs:.1f}'}"
                     f" | {txt} |")
    lines.append("")
    for st in s["steps"]:
        lines += _group_table(st)
    return "\n".join(lines)


def _group_table(st: dict) -> list[str]:
    """Per source group (a dataset's folders, e.g. defect classes) of an evaluate step: pixel errors on the
    evaluated images, detection on the images it was measured on."""
    r = st.get("result") or {}
    groups, det = r.get("groups"), (r.get("detection") or {}).get("groups") or {}
    if st["kind"] != "evaluate" or not groups or len(groups) < 2:
        return []
    # Without a detection rule the table has no detection columns (they would all read n/a).
    on = (r.get("detection") or {}).get("evaluated_on")
    head = ["group", "images", "defective", "positive pixels", "missed", "false positive"]
    head += ["detection: flagged", "detection error"] if on else []
    lines = [f"Step {st['step']} ({st['id']}) by group: pixel errors on its images"
             + (f", detection on {on}." if on else "."), "",
             "| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    for g, v in groups.items():
        row = [g, v["images"], v["defective_images"], v["positive_pixels"], _fmt(v["positive_error"], True),
               _fmt(v["negative_error"], True)]
        if on:
            d = det.get(g) or {}
            row += [f"{d['flagged']} / {d['images']}" if d else "n/a", _fmt(d.get("error"), True)]
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    lines.append("")
    return lines
