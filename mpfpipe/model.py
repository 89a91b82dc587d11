"""Model files: safetensors (no pickle: a model from a stranger cannot run code) with JSON metadata.

Tensors use the PyTorch patch network's names and layouts (``convN.weight`` (out, in, k, k) as cross-correlation,
``fcN.weight`` (out, in) over the C-order flattened (C, e, e) input, biases (out,)). The metadata key ``mpfpipe``
holds JSON with the architecture (every layer, with the names of its weight and bias tensors), window, stride,
class names, input normalisation, mirror-padding mode, provenance, and a SHA-256 of the tensor bytes and of the
rest of the metadata (format 2; format 1 covered the tensors only and is still read), so another program can
rebuild the exact forward pass from the file alone and a tampered file (tensors or metadata) is refused.

Two optional keys say how the model is to be applied to new images (files without them load with the
defaults, so older model files keep working): ``downsample``, the integer factor its training images were
down-sampled by (F x F block means; 1 = full resolution; segmenting a folder of new images applies it), and
``detection``, the image-level rule chosen on validation (``threshold``: an image is flagged defective when its
count of predicted ``positive``-class pixels, counted at the model's resolution, exceeds it), written by the
surface-defects workflow once the threshold is chosen (`set_detection`), and ``instances``, the parameters of the
instance step (`mpfpipe.segment.instances`: threshold, seed_distance, merge_threshold, min_size, ...) chosen on
validation by ``evaluate --tune-instances`` (`set_instances`); ``segment --instances`` reads them, its options win;
and ``section_context``, K > 0 when each section's input maps are it and the K sections above and below
(`mpfpipe.data.context`; ``segment`` stacks them from a plain volume).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from .arch import FC, Conv, Net, net_from_dict
from .errors import ModelFileError, OutputExistsError
from .fragment import PAD_MODE
from .options.api import MAX_CONTEXT
from .params import from_torch_layout, param_specs, to_torch_layout

FORMAT = "mpfpipe-model"
FORMAT_VERSION = 2  # 2: the SHA-256 covers the metadata too (1: the tensors only; still read)


@dataclass
class Model:
    net: Net
    params: dict  # internal layout (fc weights as (out, in, e, e) kernels)
    class_names: list = field(default_factory=list)
    normalisation: dict = field(default_factory=lambda: {"mean": [0.0], "std": [1.0]})
    padding: str = PAD_MODE
    ignore_index: int = 255
    provenance: dict = field(default_factory=dict)
    downsample: int = 1  # the factor the training images were down-sampled by; new images get the same
    detection: dict | None = None  # {"threshold": T, "positive": k, ...}: flag an image when its count > T
    instances: dict | None = None  # the instance step's parameters chosen on validation, plus how they were chosen
    section_context: int = 0  # K: each section's input holds the K sections above and below (mpfpipe.data.context)

    def __post_init__(self):
        if not self.class_names:
            self.class_names = [f"class{i}" for i in range(self.net.n_classes)]
        if len(self.class_names) != self.net.n_classes:
            raise ModelFileError(f"{len(self.class_names)} class names for a {self.net.n_classes}-class net")
        if len(set(map(str, self.class_names))) != len(self.class_names):
            raise ModelFileError(f"class names {list(self.class_names)} are not distinct")
        check_normalisation(self.normalisation, self.net.in_channels)
        if isinstance(self.downsample, bool) or not isinstance(self.downsample, (int, np.integer)) \
                or self.downsample < 1:
            raise ModelFileError(f"downsample {self.downsample!r} must be an integer >= 1")
        self.downsample = int(self.downsample)
        k = self.section_context
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= MAX_CONTEXT \
                or self.net.in_channels % (2 * k + 1):
            raise ModelFileError(f"section context {k!r} must be 0..{MAX_CONTEXT} sections each side, with the net's "
                                 f"{self.net.in_channels} input maps a multiple of 2 * {k!r} + 1")
        self.section_context = int(k)
        if self.detection is not None:
            self.detection = check_detection(self.detection, self.net.n_classes)
        if self.instances is not None:
            self.instances = check_instances(self.instances)


def check_detection(det, n_classes: int) -> dict:
    """A detection rule: ``threshold`` a count >= 0 (pixels at the model's resolution), ``positive`` a class."""
    try:
        threshold = float(det["threshold"])
        positive = int(det.get("positive", 1))
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ModelFileError(f"detection rule {det!r} is not {{'threshold': count, 'positive': class}}") from None
    if not np.isfinite(threshold) or threshold < 0 or not 0 <= positive < n_classes:
        raise ModelFileError(f"detection rule {det!r}: need a finite threshold >= 0 and a class of the "
                             f"{n_classes}-class net")
    return {**det, "threshold": threshold, "positive": positive}


def check_instances(inst) -> dict:
    """Instance-step parameters: a mapping whose parameter keys have the values the ``instances`` options allow
    (`mpfpipe.options`, the one place they are declared); other keys (how they were chosen) are kept as they are."""
    from .errors import OptionError
    from .options import check
    if not isinstance(inst, dict):
        raise ModelFileError(f"instance parameters {inst!r} are not a mapping")
    try:
        checked = check("instances", {k: v for k, v in inst.items() if k not in ("workers", "threads")},
                        where="instance parameters: ")
    except OptionError as exc:
        raise ModelFileError(str(exc)) from None
    return {**inst, **checked}


def check_normalisation(norm, channels: int, what: str = "model") -> None:
    """Per-channel mean / std: ``channels`` finite values each, std > 0 (a std of 0 divides by zero)."""
    import math
    try:
        mean, std = [float(v) for v in norm["mean"]], [float(v) for v in norm["std"]]
    except (KeyError, TypeError, ValueError):
        raise ModelFileError(f"{what}: normalisation {norm!r} is not {{'mean': [...], 'std': [...]}} of numbers") \
            from None
    if len(mean) != channels or len(std) != channels:
        raise ModelFileError(f"{what}: normalisation has {len(mean)} mean / {len(std)} std values for "
                             f"{channels} channel(s)")
    if not all(math.isfinite(v) for v in mean + std) or min(std) <= 0:
        raise ModelFileError(f"{what}: normalisation mean {mean} / std {std} must be finite with std > 0")


def _architecture(net: Net) -> dict:
    d = net.to_dict()
    n_conv = n_fc = 0
    for layer, spec in zip(net.layers, d["layers"]):
        if isinstance(layer, Conv):
            n_conv += 1
            spec.update(weight=f"conv{n_conv}.weight", bias=f"conv{n_conv}.bias")
        elif isinstance(layer, FC):
            n_fc += 1
            spec.update(weight=f"fc{n_fc}.weight", bias=f"fc{n_fc}.bias")
    d.update(stride=net.stride, fc_extent=net.fc_extent, output="softmax over the last fc layer",
             window_centre="offset (w-1)//2 from the window's top-left")
    return d


def _digest(tensors: dict, meta: dict | None = None) -> str:
    """SHA-256 of the tensors (name, dtype, shape, bytes) and, from format 2 on, of the metadata (canonical
    JSON without the digest itself), so an edited normalisation or class list is detected too."""
    h = hashlib.sha256()
    if meta is not None:
        h.update(json.dumps({k: v for k, v in meta.items() if k != "sha256"}, sort_keys=True,
                            separators=(",", ":")).encode())
    for name in sorted(tensors):
        t = np.ascontiguousarray(tensors[name])
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(t.shape).encode())
        h.update(t.tobytes())
    return h.hexdigest()


def save_model(model: Model, path, *, overwrite: bool = False, dtype=np.float32) -> Path:
    """Write a model atomically (temp file in the same folder, then rename)."""
    from safetensors.numpy import save_file

    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite to replace it")
    tensors = {k: np.ascontiguousarray(v, dtype=dtype) for k, v in to_torch_layout(model.net, model.params).items()}
    provenance = {"mpfpipe_version": __version__,
                  "saved": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **model.provenance}
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "architecture": _architecture(model.net),
            "class_names": list(model.class_names), "normalisation": model.normalisation,
            "padding": model.padding, "ignore_index": model.ignore_index, "provenance": provenance,
            "downsample": int(model.downsample)}
    if model.detection is not None:
        meta["detection"] = model.detection
    if model.instances is not None:
        meta["instances"] = model.instances
    if model.section_context:  # only when set: the files of other models stay as they were
        meta["section_context"] = model.section_context
    meta["sha256"] = _digest(tensors, meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"mpfpipe": json.dumps(meta)})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_metadata(path) -> dict:
    """The parsed ``mpfpipe`` metadata of a model file (no tensors loaded)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} not found")
    try:
        with safe_open(str(path), framework="numpy") as f:
            raw = (f.metadata() or {}).get("mpfpipe")
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for a bad header
        raise ModelFileError(f"{path} is not a readable safetensors file (truncated or corrupt?): {exc}") from None
    if raw is None:
        raise ModelFileError(f"{path} is a safetensors file but not an mpfpipe model (no 'mpfpipe' metadata)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path}: model metadata is not valid JSON ({exc})") from None
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not an mpfpipe model file")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ModelFileError(f"{path}: model format {meta['format_version']} is newer than this mpfpipe understands")
    return meta



def model_record(path) -> dict:
    """What a segmentation output records of the model file it was made with (path, checksum, architecture,
    classes, normalisation, padding, provenance): the volume and the folder outputs write the same record."""
    path = Path(path)
    meta = read_metadata(path)
    return {"path": str(path.absolute()), "sha256": meta.get("sha256"), "architecture": meta.get("architecture"),
            "class_names": meta.get("class_names"), "normalisation": meta.get("normalisation"),
            "padding": meta.get("padding"), "provenance": meta.get("provenance", {})}

def load_model(path) -> Model:
    """Read and verify a model file; raises ModelFileError with a clear message on any problem."""
    from safetensors.numpy import load_file

    path = Path(path)
    meta = read_metadata(path)
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # noqa: BLE001
        raise ModelFileError(f"{path}: cannot read tensors (truncated or corrupt?): {exc}") from None
    covered = meta if meta.get("format_version", 1) >= 2 else None  # format 1: tensors only
    if _digest(tensors, covered) != meta.get("sha256"):
        raise ModelFileError(f"{path}: checksum mismatch: the file was modified or damaged")
    try:
        arch = dict(meta["architecture"])
        net = net_from_dict({k: arch[k] for k in ("name", "in_channels", "window", "layers")})
        expected = {name for name, _ in param_specs(net)}
        if set(tensors) != expected:
            raise ModelFileError(f"{path}: tensors {sorted(tensors)} do not match the architecture "
                                 f"({sorted(expected)})")
        params = from_torch_layout(net, tensors)
        return Model(net=net, params=params, class_names=meta["class_names"], normalisation=meta["normalisation"],
                     padding=meta.get("padding", PAD_MODE), ignore_index=meta.get("ignore_index", 255),
                     provenance=meta.get("provenance", {}), downsample=meta.get("downsample", 1),
                     detection=meta.get("detection"), instances=meta.get("instances"),
                     section_context=meta.get("section_context", 0))
    except ModelFileError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise ModelFileError(f"{path}: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: inconsistent model file ({type(exc).__name__}: {exc})") from None


def set_detection(path, detection: dict) -> Path:
    """Write the detection rule into the model file ``path`` (verified on reading, rewritten atomically; the
    tensors and everything else are kept)."""
    return _replace(path, detection=lambda m: check_detection(detection, m.net.n_classes))


def set_instances(path, instances: dict) -> Path:
    """Write the instance step's parameters into the model file ``path``, as `set_detection` does."""
    return _replace(path, instances=lambda m: check_instances(instances))


def _replace(path, **fields) -> Path:
    """Read and verify ``path``, replace the metadata ``fields`` (name -> function of the model giving the
    checked value) and save it atomically under the same name with a new digest (temp file + rename)."""
    import dataclasses
    model = load_model(path)
    return save_model(dataclasses.replace(model, **{k: f(model) for k, f in fields.items()}), path, overwrite=True)


def same_model(record: dict, path) -> bool:
    """Whether the model file ``path`` holds the model a segmentation output's `model_record` describes: the same
    digest, or (the file was since rewritten by `set_detection` / `set_instances`, which change the digest) the
    same architecture, classes, normalisation and save time (kept through such rewrites)."""
    meta = read_metadata(path)
    if meta.get("sha256") == record.get("sha256"):
        return True
    saved = (record.get("provenance") or {}).get("saved")
    return saved is not None and saved == (meta.get("provenance") or {}).get("saved") and all(
        meta.get(k) == record.get(k) for k in ("architecture", "class_names", "normalisation", "padding"))
