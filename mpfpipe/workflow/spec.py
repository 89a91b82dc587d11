"""Workflow files: loading, parameters, validation against the APIs, and the resolved plan of steps."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import WorkflowError
from ..options import api_options
from ..options import check as check_options

KINDS = ("ingest", "train", "segment", "evaluate")
TOP_KEYS = {"name", "description", "params", "steps"}
BUILTINS = ("run", "workflow_dir")
_VAR = re.compile(r"\$\{([^}]*)\}")
_REQUIRED = object()  # an option a step must give


# ------------------------------------------------------------------------------------------------ options
def _api_options(kind: str, synthetic: str | None = None) -> dict:
    """Options a step of ``kind`` accepts (from their declarations, `mpfpipe.options`): name -> default
    (``_REQUIRED`` when required)."""
    if kind == "ingest":  # the declarations say which options a step may set (the run decides the others)
        return {**api_options(f"synth_{synthetic}" if synthetic else "ingest"), "source": _REQUIRED}
    if kind == "train":
        return {**api_options("train"), "dataset": None}
    if kind == "segment":
        # instances: true, or the instance step's options (checked as `instances` declares them)
        return {**api_options("segment"), "model": None, "input": None, "overlays": 0, "instances": None}
    if kind == "evaluate":
        return {**api_options("evaluate"), "pred": None, "truth": None, "image": None, "images": "all",
                "detection": True}
    raise AssertionError(kind)


# ------------------------------------------------------------------------------------------------ model
@dataclass
class Step:
    index: int          # 1-based
    kind: str
    id: str
    options: dict       # resolved (parameters substituted, references still as ids)
    outputs: dict = field(default_factory=dict)   # name -> Path
    inputs: dict = field(default_factory=dict)    # option -> Path (resolved references)

    @property
    def label(self) -> str:
        return f"step {self.index} ({self.kind}{'' if self.id == self.kind else ' ' + repr(self.id)})"


@dataclass
class Workflow:
    path: Path
    name: str
    description: str
    params: dict        # effective values (defaults + overrides)
    defaults: dict
    raw_steps: list

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "file": str(self.path),
                "params": self.params}


def parse_sets(items) -> dict:
    """``["a=1", "b=x"]`` -> {"a": 1, "b": "x"} (values read as YAML scalars)."""
    out = {}
    for item in items or ():
        if isinstance(item, (tuple, list)):
            key, val = item
        else:
            if "=" not in str(item):
                raise WorkflowError(f"--set {item!r}: expected KEY=VALUE")
            key, val = str(item).split("=", 1)
        key = key.strip()
        if not key:
            raise WorkflowError(f"--set {item!r}: empty parameter name")
        if isinstance(val, str) and val.strip():
            try:
                parsed = yaml.safe_load(val)
            except yaml.YAMLError:
                parsed = val
            if not isinstance(parsed, dict):
                val = parsed
        out[key] = val
    return out


def load_workflow(path, sets=None) -> Workflow:
    """Read and check a workflow file; ``sets`` ({key: value} or ["key=value", ...]) override its params."""
    path = Path(path)
    if not path.is_file():
        raise WorkflowError(f"workflow file {path} not found")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise WorkflowError(f"{path} is not valid YAML{where}: {what}") from None
    except UnicodeDecodeError:
        raise WorkflowError(f"{path} is not a text (YAML) file") from None
    if not isinstance(doc, dict):
        raise WorkflowError(f"{path}: a workflow is a mapping with 'name', 'params' and 'steps'")
    unknown = sorted(set(doc) - TOP_KEYS)
    if unknown:
        raise WorkflowError(f"{path}: unknown key(s) {', '.join(map(repr, unknown))} (known: name, description, "
                            "params, steps)")
    params = doc.get("params") or {}
    if not isinstance(params, dict):
        raise WorkflowError(f"{path}: 'params' must be a mapping of parameter names to default values")
    for k in params:
        if k in BUILTINS:
            raise WorkflowError(f"{path}: parameter name {k!r} is reserved (built-ins: {', '.join(BUILTINS)})")
    steps = doc.get("steps")
    if not isinstance(steps, list) or not steps:
        raise WorkflowError(f"{path}: 'steps' must be a non-empty list")
    overrides = sets if isinstance(sets, dict) else parse_sets(sets)
    bad = sorted(k for k in overrides if k not in params)
    if bad:
        known = ", ".join(sorted(params)) or "none"
        raise WorkflowError(f"unknown parameter {bad[0]!r} for workflow {path.name} (its parameters: {known})")
    name = str(doc.get("name") or path.stem)
    return Workflow(path, name, str(doc.get("description") or "").strip(), {**params, **overrides}, dict(params),
                    steps)


def _substitute(value, env: dict, where: str):
    if isinstance(value, dict):
        return {k: _substitute(v, env, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, env, where) for v in value]
    if not isinstance(value, str) or "${" not in value:
        return value
    for name in _VAR.findall(value):
        if name not in env:
            known = ", ".join(sorted(k for k in env if k not in BUILTINS)) or "none"
            raise WorkflowError(f"{where}: ${{{name}}} is not a parameter of this workflow (parameters: {known})")
    whole = _VAR.fullmatch(value)
    if whole:
        return env[whole.group(1)]
    return _VAR.sub(lambda m: str(env[m.group(1)]), value)


def _params_in(value) -> list:
    if isinstance(value, dict):
        return [p for v in value.values() for p in _params_in(v)]
    if isinstance(value, list):
        return [p for v in value for p in _params_in(v)]
    return _VAR.findall(value) if isinstance(value, str) else []


def plan(wf: Workflow, run_dir) -> list[Step]:
    """Resolve parameters, ids, references and output paths, and check every option, before anything runs."""
    run_dir = Path(run_dir)
    env = {**wf.params, "run": str(run_dir), "workflow_dir": str(wf.path.parent)}
    steps: list[Step] = []
    by_id: dict[str, Step] = {}
    latest: dict[str, Step] = {}
    for n, item in enumerate(wf.raw_steps, 1):
        if not isinstance(item, dict) or len(item) != 1:
            raise WorkflowError(f"{wf.path.name}: step {n} must be a mapping with one key, the step kind "
                                f"({', '.join(KINDS)}), e.g. '- train: {{net: steel}}'")
        (kind, raw), = item.items()
        if kind not in KINDS:
            raise WorkflowError(f"{wf.path.name}: step {n}: unknown step {kind!r} (steps: {', '.join(KINDS)})")
        raw = raw or {}
        if not isinstance(raw, dict):
            raise WorkflowError(f"{wf.path.name}: step {n} ({kind}): options must be a mapping")
        where = f"{wf.path.name}: step {n} ({kind})"
        opts = _substitute(dict(raw), env, where)
        sid = str(opts.pop("id", kind))
        if sid in by_id:
            raise WorkflowError(f"{where}: id {sid!r} is used twice; give each {kind} step its own 'id'")
        step = Step(n, kind, sid, opts)
        where = f"{wf.path.name}: {step.label}"
        synthetic = None
        if kind == "ingest":
            src = opts.get("source", opts.pop("sources", None))
            if src is None:
                raise WorkflowError(f"{where}: needs 'source' (files, a folder, or synthetic:em / synthetic:defects)")
            src = [str(s) for s in src] if isinstance(src, list) else [str(src)]
            opts["source"] = src
            if any(s.startswith("synthetic:") for s in src):
                synthetic = src[0].split(":", 1)[1]
                if len(src) != 1 or synthetic not in ("em", "defects"):
                    raise WorkflowError(f"{where}: a synthetic source is 'synthetic:em' or 'synthetic:defects', alone")
        known = _api_options(kind, synthetic)
        unknown = sorted(set(opts) - set(known))
        if unknown:
            raise WorkflowError(f"{where}: unknown option {unknown[0]!r} (options: {', '.join(sorted(known))})")
        missing = sorted(k for k, v in known.items() if v is _REQUIRED and k not in opts)
        if missing:
            raise WorkflowError(f"{where}: option {missing[0]!r} is required")
        # the values, before any step runs
        # a segment / evaluate step's `instances` is true or a mapping of the instance step's options (shared
        # through one workflow parameter; steps._instance_params checks it), not the command line's flag
        check_options(f"synth_{synthetic}" if synthetic else kind,
                      {k: v for k, v in opts.items() if not (kind in ("segment", "evaluate") and k == "instances")},
                      where=f"{where}: ")

        def ref(option, default_kind=None, required=True, must_exist=True):
            val = opts.get(option)
            if val is None:
                if default_kind and default_kind in latest:
                    return latest[default_kind].outputs["main"]
                if required:
                    raise WorkflowError(f"{where}: needs {option!r} (a step id or a path)"
                                        + (f"; no earlier {default_kind} step" if default_kind else ""))
                return None
            val = str(val)
            if val in by_id:
                return by_id[val].outputs["main"]
            p = Path(val)
            if must_exist and not p.exists():
                hint = _params_in(raw.get(option))
                raise WorkflowError(f"{where}: {option} {val!r} is neither an earlier step id "
                                    f"({', '.join(by_id) or 'none yet'}) nor an existing path"
                                    + (f"; set it with --set {hint[0]}=PATH" if hint else ""))
            return p

        if kind == "ingest":
            if not synthetic:
                for s in opts["source"]:
                    if not Path(s).exists():
                        hint = _params_in(raw.get("source", raw.get("sources")))
                        raise WorkflowError(f"{where}: data path {s} not found"
                                            + (f"; set it with --set {hint[0]}=PATH" if hint
                                               else " (paths are relative to the current folder)"))
            step.outputs["main"] = run_dir / "data" / f"{sid}.zarr"
        elif kind == "train":
            step.inputs["dataset"] = ref("dataset", "ingest")
            stem = "model" if sid == "train" else sid
            tdir = run_dir / ("train" if sid == "train" else sid)
            step.outputs.update(main=run_dir / f"{stem}.safetensors", checkpoint=tdir / "checkpoint.npz",
                                log=tdir / "log.jsonl", plot=tdir / "loss.png")
        elif kind == "segment":
            step.inputs["model"] = ref("model", "train")
            step.inputs["input"] = ref("input", "ingest")
            step.outputs["main"] = run_dir / ("segmentation.ome.zarr" if sid == "segment" else f"{sid}.ome.zarr")
            step.outputs["overlays"] = run_dir / sid / "overlays"
        else:
            step.inputs["pred"] = ref("pred", "segment")
            truth = ref("truth", None, required=False)
            if truth is None:  # the segmented input, when it is a dataset made by an ingest step
                seg = next((s for s in steps if s.outputs.get("main") == step.inputs["pred"]), None)
                src = seg.inputs.get("input") if seg else None
                if src is None or not any(s.kind == "ingest" and s.outputs["main"] == src for s in steps):
                    raise WorkflowError(f"{where}: needs 'truth' (a dataset step id or a label stack path)")
                truth = src
            step.inputs["truth"] = truth
            seg = next((s for s in steps if s.outputs.get("main") == step.inputs["pred"]), None)
            if seg is not None and any(s.kind == "train" and s.outputs["main"] == seg.inputs.get("model")
                                       for s in steps):
                step.inputs["model"] = seg.inputs["model"]  # trained here: the detection rule is written into it
            img = ref("image", None, required=False)
            if img is not None:
                step.inputs["image"] = img
            base = run_dir if sid == "evaluate" else run_dir / sid
            step.outputs.update(main=base / "report.json", overlays=base / "overlays")
        steps.append(step)
        by_id[sid] = step
        latest[kind] = step
    return steps


# ------------------------------------------------------------------------------------------------ state
