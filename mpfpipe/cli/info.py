"""``mpfpipe info PATH``: what is in a model file, a dataset, a segmentation output or a run folder."""
from __future__ import annotations

import json as _json
from pathlib import Path

import click

from ..errors import MpfError
from . import cli
from ..options import cli_options
from ._common import config_option


def _zarr_attrs(path: Path) -> dict | None:
    if not (path.is_dir() and (path / "zarr.json").is_file()):
        return None
    try:
        import zarr
        return dict(zarr.open_group(str(path), mode="r").attrs)
    except Exception:  # noqa: BLE001 - not a group
        return None


def model_info(path: Path) -> dict:
    from ..arch import net_from_dict
    from ..model import load_model, read_metadata
    from ..params import n_params

    load_model(path)  # verifies the checksum: a damaged or edited model is reported, not described
    meta = read_metadata(path)
    arch = meta.get("architecture", {})
    net = net_from_dict({k: arch[k] for k in ("name", "in_channels", "window", "layers") if k in arch})
    prov = meta.get("provenance") or {}
    training = prov.get("training") or {}
    keep = ("status", "optimizer", "steps", "epochs_done", "dataset", "n_train", "n_val", "initial_loss",
            "final_loss", "best_val_loss", "best_val_error", "best_epoch", "augment", "balance", "cluster", "seed")
    return {"kind": "model", "path": str(path), "size_bytes": path.stat().st_size,
            "architecture": net.describe(), "name": net.name, "layers": arch.get("layers"),
            "window": net.window, "stride": net.stride, "in_channels": net.in_channels, "n_classes": net.n_classes,
            "n_params": n_params(net), "class_names": meta.get("class_names"),
            "normalisation": meta.get("normalisation"), "padding": meta.get("padding"),
            "ignore_index": meta.get("ignore_index"), "sha256": meta.get("sha256"),
            "downsample": int(meta.get("downsample") or 1), "detection": meta.get("detection"),
            "section_context": int(meta.get("section_context") or 0),
            "created": meta.get("created") or prov.get("created"), "mpfpipe_version": meta.get("mpfpipe_version"),
            "training": {k: training[k] for k in keep if k in training},
            "training_time_s": (training.get("timing") or {}).get("wall")}


def dataset_info(path: Path) -> dict:
    import numpy as np

    from ..data import open_dataset

    ds = open_dataset(path)
    sizes = np.asarray(ds.sizes).reshape(-1, 2)
    counts = ds.attrs.get("class_counts")
    per_class = None
    if counts:
        per_class = dict(zip(ds.class_names, np.asarray(counts, np.int64).sum(axis=0).tolist()))
    return {"kind": "dataset", "path": str(path), "images": ds.n_images, "channels": ds.channels,
            "dtype": str(ds.dtype), "sizes": {"min": sizes.min(axis=0).tolist(), "max": sizes.max(axis=0).tolist(),
                                              "distinct": int(len({tuple(s) for s in sizes.tolist()}))},
            "classes": ds.class_names, "class_pixels": per_class, "ignore_index": ds.ignore_index,
            "splits": ds.split_sizes(), "with_positive_pixel": int(sum(ds.positive)), "masks": ds.has_masks,
            "normalisation": ds.normalisation, "downsample": ds.attrs.get("downsample"),
            "sources": (ds.attrs.get("provenance") or {}).get("sources"),
            "checksums": bool(ds.attrs.get("checksums")), "volume": ds.volume,
            "section_context": (ds.attrs.get("section_context") or {}).get("sections", 0)}


def volume_line(vol: dict) -> str:
    """A volume dataset's shape, voxel size, chunks and split sections in one line."""
    runs = "; ".join(f"{name} " + ",".join(f"{a}-{b - 1}" if b - a > 1 else f"{a}" for a, b in r)
                     for name, r in vol["z_runs"].items() if r)
    vs = "x".join(f"{v:g}" for v in vol["voxel_size"])
    return (f"{'x'.join(map(str, vol['shape']))} (z, y, x), voxel {vs} {vol.get('unit') or '(no unit)'}, chunks "
            f"{'x'.join(map(str, vol['chunks']))}; sections {runs}")


def segmentation_info(path: Path, meta: dict) -> dict:
    import zarr

    from ..segment import read_done

    g = zarr.open_group(str(path), mode="r")
    arrays = {}

    def walk(grp, prefix=""):
        for name, node in grp.members():
            key = f"{prefix}{name}"
            if isinstance(node, zarr.Array):
                arrays[key] = {"shape": list(node.shape), "dtype": str(node.dtype), "chunks": list(node.chunks)}
            else:
                walk(node, key + "/")
    walk(g)
    try:
        done = read_done(path)
        done_n, total = int(done.sum()), int(done.size)
    except Exception:  # noqa: BLE001
        done_n = total = None
    model = meta.get("model") or {}
    return {"kind": "segmentation", "path": str(path), "complete": bool(meta.get("complete")),
            "blocks_done": done_n, "blocks": total, "arrays": arrays,
            "class_names": model.get("class_names"), "model": {k: model.get(k) for k in ("path", "sha256")},
            "input": {k: (meta.get("input") or {}).get(k) for k in ("path", "kind", "shape", "channels", "dtype")},
            "settings": meta.get("settings"), "summary": meta.get("summary")}


def run_info(path: Path) -> dict:
    state = _json.loads((path / "workflow.json").read_text())
    return {"kind": "run", "path": str(path), "workflow": state.get("workflow"),
            "steps": {k: {"kind": v.get("kind"), "status": v.get("status"), "seconds": v.get("seconds")}
                      for k, v in (state.get("steps") or {}).items()},
            "files": sorted(p.name for p in path.iterdir())}


def verify(path, d: dict) -> dict:
    """Read back every chunk of a dataset or segmentation against its checksums; MpfError naming the first
    damaged chunk (and how many there are) if any is missing or damaged."""
    if d["kind"] == "dataset":
        from ..data import open_dataset
        ds = open_dataset(path)
        problems, n = ds.verify(), ds.n_images * (3 if ds.has_masks else 2)
        fix = "re-ingest it"
        if not ds.attrs.get("checksums"):  # made before mpfpipe recorded them: only readability was checked
            if problems:
                raise MpfError(f"{len(problems)} unreadable chunk(s) ({fix}); first: {problems[0]}")
            return {**d, "verified": f"{n} chunks readable (no checksums recorded: an older dataset)"}
    elif d["kind"] == "segmentation":
        from ..segment.verify import damaged_outputs
        problems, n = damaged_outputs(path), d["blocks_done"] or 0
        fix = "rerun the same segment command to recompute those blocks"
    elif d["kind"] == "folder segmentation":
        from ..segment.folder import verify_folder
        n, problems = verify_folder(path)
        if problems:
            raise MpfError(f"{len(problems)} damaged mask(s) (rerun the same segment command to redo them); "
                           f"first: {problems[0]}")
        return {**d, "verified": f"{n} done masks match their checksums"}
    else:
        return d
    if problems:
        raise MpfError(f"{len(problems)} damaged chunk(s) ({fix}); first: {problems[0]}")
    return {**d, "verified": f"{n} {'chunks' if d['kind'] == 'dataset' else 'done blocks'} match their checksums"}


def describe(path) -> dict:
    """A dict describing ``path``: a model file, a dataset, a segmentation output or a workflow run folder."""
    path = Path(path)
    if not path.exists():
        raise MpfError(f"{path} not found")
    if path.is_file():
        if path.suffix.lower() in (".tif", ".tiff", ".npy", ".png", ".jpg", ".jpeg", ".bmp"):
            raise MpfError(f"{path} is an image file, not an mpfpipe model, dataset or segmentation "
                           "(ingest it with `mpfpipe ingest`)")
        from .._safety import KINDS, recognise
        kind = recognise(path)
        if kind not in (None, "model"):  # a checkpoint, a log, an export...: ours, but not what info describes
            raise MpfError(f"{path} is an {KINDS[kind]}, not a model file; info describes model files "
                           "(.safetensors), datasets, segmentation outputs and run folders")
        with open(path, "rb") as fh:
            head = fh.read(9)
        if kind is None and not (len(head) == 9 and head[8:9] == b"{"):  # a safetensors file opens with its header
            raise MpfError(f"{path} is not an mpfpipe model file (nor a dataset, segmentation or run folder): "
                           "info describes those")
        return model_info(path)
    if (path / "workflow.json").is_file():
        return run_info(path)
    from ..segment.folder import STATE, read_state
    state = read_state(path)
    if state is not None:  # folder inference: settings and the last run's summary
        return {"kind": "folder segmentation", "path": str(path), "complete": state.get("complete"),
                "settings": state.get("settings"), "summary": state.get("summary"), "errors": state.get("errors"),
                "state_file": str(path / STATE)}
    attrs = _zarr_attrs(path)
    if attrs is not None:
        if "mpfpipe_dataset" in attrs:
            return dataset_info(path)
        meta = attrs.get("mpfpipe")
        if isinstance(meta, dict) and meta.get("format") == "mpfpipe-segmentation":
            return segmentation_info(path, meta)
    from .._safety import CLAIM, KINDS
    if (path / CLAIM).is_file():
        from .._safety import recognise
        raise MpfError(f"{path} is an unfinished {KINDS.get(recognise(path) or '', 'mpfpipe output')}: the run that "
                       "made it stopped before writing its metadata; rerun that command with --overwrite")
    raise MpfError(f"{path} is not an mpfpipe model file, dataset, segmentation output or run folder")


def _size(v, repeat: int) -> str:
    """A 2D size (w: "w x w") or a 3D net's [z, y, x] as "zxyxx"."""
    return "x".join(map(str, v)) if isinstance(v, (list, tuple)) else "x".join([str(v)] * repeat)


def _fmt_text(d: dict) -> str:
    k = d["kind"]
    lines = [f"{d['path']}: {k}"]
    if k == "model":
        t = d["training"]
        lines += [f"  architecture  {d['architecture']}",
                  f"  window        {_size(d['window'], 2)}, stride {_size(d['stride'], 1)}, {d['n_params']} "
                  f"parameters",
                  f"  classes       {', '.join(d['class_names'] or [])} (ignore label {d['ignore_index']})",
                  f"  normalisation mean {d['normalisation'].get('mean')}, std {d['normalisation'].get('std')}; "
                  f"padding {d['padding']}",
                  f"  new images    down-sampled by {d.get('downsample', 1)}; detection: "
                  + (f"flag when more than {d['detection']['threshold']:g} pixels of class "
                     f"{d['detection'].get('positive', 1)} (at the model's resolution; chosen on "
                     f"{d['detection'].get('chosen_on', '?')})" if d.get("detection")
                     else "no rule (any defect pixel)"),
                  f"  sha256        {d['sha256']}"]
        if d.get("section_context"):
            lines.insert(-1, f"  sections      each section's input holds the {d['section_context']} section(s) above "
                         "and below it (2.5-D): segment a stack")
        if t:
            lines.append(f"  training      {t.get('optimizer')}, {t.get('steps')} steps ({t.get('status')}) on "
                         f"{t.get('n_train')} train / {t.get('n_val')} val images of {t.get('dataset')}")
            lines.append(f"                loss {t.get('initial_loss')} -> {t.get('final_loss')}; best val loss "
                         f"{t.get('best_val_loss')}, pixel error {t.get('best_val_error')} at epoch "
                         f"{t.get('best_epoch')}"
                         + (f"; {d['training_time_s']:.1f} s" if d.get("training_time_s") else ""))
    elif k == "dataset":
        s = d["sizes"]
        lines += [f"  images        {d['images']} x {d['channels']} channel(s) {d['dtype']}, sizes "
                  f"{s['min'][0]}x{s['min'][1]} .. {s['max'][0]}x{s['max'][1]} ({s['distinct']} distinct)",
                  f"  classes       {', '.join(d['classes'])} (ignore label {d['ignore_index']})",
                  "  class pixels  " + (", ".join(f"{c}: {n:,}" for c, n in d["class_pixels"].items())
                                         if d["class_pixels"] else "n/a"),
                  "  splits        " + ", ".join(f"{n} {c}" for n, c in d["splits"].items()),
                  f"  positive      {d['with_positive_pixel']} image(s) with a non-background pixel",
                  f"  normalisation mean {d['normalisation']['mean']}, std {d['normalisation']['std']}",
                  f"  sources       {d['sources']}"]
        if d.get("volume"):
            lines.insert(-3, "  volume        " + volume_line(d["volume"]))
        if d.get("section_context"):
            lines.insert(2, f"  sections      each image holds the {d['section_context']} section(s) above and below "
                         "it as extra channels (2.5-D)")
    elif k == "folder segmentation":
        sm = d.get("summary") or {}
        lines += [f"  complete      {d.get('complete')} ({sm.get('images')} images, {sm.get('failed')} failed at the "
                  f"last run; {sm.get('flagged')} flagged)", f"  settings      {d.get('settings')}",
                  f"  detections    {sm.get('csv')}"]
        lines += [f"  failed        {e}" for e in d.get("errors") or []]
    elif k == "segmentation":
        lines.append(f"  complete      {d['complete']} ({d['blocks_done']}/{d['blocks']} blocks done)")
        lines.append(f"  classes       {', '.join(d['class_names'] or [])}")
        for name, a in d["arrays"].items():
            lines.append(f"  array {name:<24} {a['dtype']} {a['shape']} chunks {a['chunks']}")
        lines.append(f"  model         {d['model']['path']} (sha256 {str(d['model']['sha256'])[:12]}...)")
        lines.append(f"  input         {d['input']['path']} {d['input']['shape']}")
    else:
        wf = d.get("workflow") or {}
        lines.append(f"  workflow      {wf.get('name')} ({wf.get('file')}), params {wf.get('params')}")
        for sid, st in d["steps"].items():
            secs = st.get("seconds")
            lines.append(f"  step {sid:<12} {st['kind']:<9} {st['status']}"
                         + (f" in {secs:.1f} s" if secs is not None else ""))
        lines.append(f"  files         {', '.join(d['files'])}")
    if d.get("verified"):
        lines.append(f"  verified      {d['verified']}")
    elif k in ("dataset", "segmentation"):
        recorded = d.get("checksums") if k == "dataset" else "checksums" in d["arrays"]
        lines.append("  checksums     " + ("recorded per chunk, not read back here (--verify reads every chunk)"
                                         if recorded else "none (written before mpfpipe recorded them)"))
    return "\n".join(lines)


@cli.command("info")
@config_option
@click.argument("path", type=click.Path())
@cli_options("info")
def info_cmd(path, **kw):
    """Show what is in PATH: a model file (architecture, window, stride, classes, normalisation, training),
    a dataset (images, sizes, classes, class pixel counts, splits), a segmentation output (arrays,
    completeness) or a workflow run folder (steps and their status)."""
    d = describe(path)
    if kw["verify"]:
        d = verify(path, d)
    if kw["json"]:
        from ..workflow import json_safe
        click.echo(_json.dumps(json_safe(d), indent=2, default=str))
    else:
        click.echo(_fmt_text(d))
