"""The segmentation output: an OME-Zarr 0.5 image (Zarr v3) with probabilities, labels and per-block done markers.

Layout of OUTPUT::

    OUTPUT/                  group; attrs "ome" (NGFF 0.5 multiscales, axes c[, z], y, x) and "mpfpipe" (below)
      0                      probabilities (K, Z, Y, X) float32, or uint8 = round(255 p) with --quantize;
                             chunks (K, bz, by, bx): one chunk per block
      1, 2, ...              the pyramid (`pyramid`): y, x halved per level, z kept (halved too at the levels
                             ``attrs["mpfpipe"]["z_levels"]`` of a 3D model's near-isotropic volume); same chunks
      labels/                attrs "ome": {"labels": ["segmentation"]}
        segmentation/        attrs "ome": multiscales (axes [z,] y, x) + "image-label" (colours, class names)
          0                  (Z, Y, X) uint8 class ids (arg-max, or p[positive] > threshold); 255 outside valid
          1, 2, ...          its pyramid (as many levels as the probabilities)
      done                   (nZ, nY, nX) uint8, chunks of one element, uncompressed: 1 once a block's data landed
      done_1, done_2, ...    the same for the blocks of each pyramid level

(For a (Y, X) input the z axis is dropped everywhere.) ``attrs["mpfpipe"]`` holds the format, the model's
provenance (file, SHA-256, architecture, class names, normalisation, training provenance), the input, the block
size, options and ``complete``, which is set true only after every block of every level is done. Chunk writes
in Zarr's local store are atomic (temp file + rename), and each block writes only its own chunks, then its done
marker: a killed run leaves only whole chunks, and a rerun recomputes exactly the blocks without a marker.
"""
from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import numpy as np

from .. import _safety

FORMAT = "mpfpipe-segmentation"
FORMAT_VERSION = 1
LABELS_NAME = "segmentation"
_PALETTE = [[0, 0, 0, 0], [255, 64, 64, 255], [64, 160, 255, 255], [255, 200, 0, 255], [80, 220, 80, 255],
            [200, 80, 255, 255], [0, 220, 220, 255], [255, 128, 0, 255]]


def _axes(two_d: bool, channel: bool, units: dict) -> list[dict]:
    names = ([] if two_d else ["z"]) + ["y", "x"]
    axes = [{"name": "c", "type": "channel"}] if channel else []
    for n in names:
        a = {"name": n, "type": "space"}
        if units.get(n):
            a["unit"] = units[n]
        axes.append(a)
    return axes


def _multiscales(name: str, axes: list[dict], scale: list[float], levels: int, zlevels=()) -> dict:
    """NGFF multiscales of ``levels`` datasets "0", "1", ...: the last two axes (y, x) double their voxel size per
    level, z (the third last axis) at the ``zlevels``; a level's pixel is the mean of the 2^l x 2^l level-0 pixels
    (times 2^m sections), so its centre moves by (2^l - 1) / 2 of them."""
    datasets = []
    for lv in range(levels):
        f = [1.0] * (len(scale) - 2) + [2.0 ** lv] * 2
        if zlevels and len(scale) >= 3:
            f[-3] = 2.0 ** sum(1 for z in zlevels if z <= lv)
        ct = [{"type": "scale", "scale": [float(s) * k for s, k in zip(scale, f)]}]
        if lv:
            ct.append({"type": "translation", "translation": [float(s) * (k - 1) / 2 for s, k in zip(scale, f)]})
        datasets.append({"path": str(lv), "coordinateTransformations": ct})
    return {"version": "0.5", "multiscales": [{"name": name, "axes": axes, "datasets": datasets}]}


def done_name(level: int) -> str:
    return "done" if level == 0 else f"done_{level}"


def checksums_name(level: int) -> str:
    return "checksums" if level == 0 else f"checksums_{level}"


def output_state(path) -> dict | None:
    """The ``mpfpipe`` attributes of an existing segmentation output, None if ``path`` does not exist; raises
    OutputExistsError if it exists but is not one of ours (we never delete what we did not write)."""
    import zarr
    p = Path(path)
    if not p.exists():
        return None
    try:
        g = zarr.open_group(str(p), mode="r")
        meta = dict(g.attrs).get("mpfpipe")
    except Exception:  # noqa: BLE001
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        return {"foreign": True}
    return meta


def remove_output(path) -> None:
    p = Path(path)
    if p.is_dir():
        shutil.rmtree(p)
    elif p.exists():
        p.unlink()


def create_output(path, *, volume, block: tuple, class_names: list, quantize: bool, meta: dict,
                  levels: int = 1, zlevels=()) -> None:
    """Create the empty output (arrays of ``levels`` levels, metadata, done markers); ``meta`` goes to
    attrs["mpfpipe"]."""
    import zarr
    from zarr.codecs import BloscCodec, BloscShuffle

    from .blocks import LABEL_FILL, grid_shape
    from .pyramid import level_chunk, level_shape

    K = len(class_names)
    Z, Y, X = volume.shape
    two_d = volume.two_d
    chunk = tuple(min(b, n) for b, n in zip(block, volume.shape))
    comp = [BloscCodec(cname="zstd", clevel=3, shuffle=BloscShuffle.bitshuffle)]
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    _safety.claim(path, "segmentation")  # until attrs["mpfpipe"] is written: a failure here stays ours
    pdtype = np.uint8 if quantize else np.float32
    labels = root.create_group("labels")
    seg = labels.create_group(LABELS_NAME)
    dims = ["y", "x"] if two_d else ["z", "y", "x"]
    for lv in range(levels):
        lshape, lchunk = level_shape(volume.shape, lv, zlevels), level_chunk(volume.shape, chunk, lv, zlevels)
        lspatial, lschunk = (lshape[1:], lchunk[1:]) if two_d else (lshape, lchunk)
        root.create_array(str(lv), shape=(K, *lspatial), chunks=(K, *lschunk), dtype=pdtype, fill_value=0,
                          compressors=comp, dimension_names=["c", *dims])
        seg.create_array(str(lv), shape=lspatial, chunks=lschunk, dtype=np.uint8, fill_value=LABEL_FILL,
                         compressors=comp, dimension_names=dims)
        root.create_array(done_name(lv), shape=grid_shape(lshape, lchunk), chunks=(1, 1, 1), dtype=np.uint8,
                          fill_value=0, compressors=None)
        # CRC-32 of each block's probability and label chunk, written before its done marker (segment.verify)
        root.create_array(checksums_name(lv), shape=(*grid_shape(lshape, lchunk), 2), chunks=(1, 1, 1, 2),
                          dtype=np.uint32, fill_value=0, compressors=None)
    grid = grid_shape(volume.shape, chunk)

    scale = volume.scale[1:] if two_d else volume.scale
    units = volume.units
    img = _multiscales("probabilities", _axes(two_d, True, units), [1.0, *scale], levels, zlevels)
    img["omero"] = {"channels": [{"label": str(n), "color": "%02X%02X%02X" % tuple(_PALETTE[(i + 1) % 8][:3]),
                                  "active": True,
                                  "window": {"min": 0.0, "max": 255.0 if quantize else 1.0,
                                             "start": 0.0, "end": 255.0 if quantize else 1.0}}
                                 for i, n in enumerate(class_names)]}
    root.attrs["ome"] = img
    # neuroglancer reads channel names from the 0.4 place (attrs "omero"), NGFF 0.5 has them in attrs "ome"
    root.attrs["omero"] = img["omero"]
    labels.attrs["ome"] = {"version": "0.5", "labels": [LABELS_NAME]}
    seg_meta = _multiscales(LABELS_NAME, _axes(two_d, False, units), scale, levels, zlevels)
    seg_meta["image-label"] = {
        "version": "0.5",
        "colors": [{"label-value": i, "rgba": _PALETTE[i % 8]} for i in range(K)],
        "properties": [{"label-value": i, "class": str(n)} for i, n in enumerate(class_names)],
        "source": {"image": "../../"}}
    seg.attrs["ome"] = seg_meta
    root.attrs["mpfpipe"] = {**meta, "format": FORMAT, "format_version": FORMAT_VERSION, "complete": False,
                             "token": uuid.uuid4().hex,
                             "block": list(chunk), "grid": list(grid), "levels": int(levels),
                             **({"z_levels": list(zlevels)} if zlevels else {}),
                             "quantized": bool(quantize),
                             "probability_scale": (1.0 / 255.0) if quantize else 1.0,
                             "label_fill": LABEL_FILL, "class_names": list(class_names)}
    _safety.release(path)


def set_complete(path, complete: bool = True, **extra) -> None:
    import zarr
    root = zarr.open_group(str(path), mode="r+")
    meta = dict(root.attrs["mpfpipe"])
    meta.update(extra, complete=bool(complete))
    root.attrs["mpfpipe"] = meta


def read_done(path, level: int = 0) -> np.ndarray:
    """The done markers (nZ, nY, nX) of a level's blocks as bool."""
    import zarr
    return np.asarray(zarr.open_array(str(path), path=done_name(level), mode="r")[...]) != 0


class Writer:
    """A worker's handle on the output arrays (opened once per process and output)."""

    _cache: dict = {}

    def __init__(self, path: str, two_d: bool):
        import zarr
        self.two_d = two_d
        root = zarr.open_group(path, mode="r+")
        self.probs = root["0"]
        self.labels = root["labels"][LABELS_NAME]["0"]
        self.done = root["done"]
        self.quantized = bool(root.attrs["mpfpipe"]["quantized"])
        self._root = root
        self._levels = {}

    def _level(self, level: int) -> tuple:
        if level not in self._levels:
            r = self._root
            sums = checksums_name(level)  # outputs from before checksums have none
            self._levels[level] = (r[str(level)], r["labels"][LABELS_NAME][str(level)], r[done_name(level)],
                                   r[sums] if sums in r else None)
        return self._levels[level]

    def level_arrays(self, level: int) -> tuple:
        """(probabilities, labels) arrays of a level."""
        return self._level(level)[:2]

    @classmethod
    def get(cls, path: str, two_d: bool, token: str = "") -> "Writer":
        """``token`` identifies one creation of the output (a recreated output must not reuse old handles)."""
        key = (path, two_d)
        cached = cls._cache.get(key)
        if cached is None or cached[0] != token:
            cached = cls._cache[key] = (token, cls(path, two_d))
        return cached[1]

    def write(self, block, probs: np.ndarray, labels: np.ndarray, level: int = 0) -> None:
        """Write one block's chunks of a level (probabilities then labels), then its done marker. Level-0
        probabilities are quantised here with --quantize; the pyramid's come from quantised ones already."""
        from .blocks import quantise
        if self.quantized and probs.dtype != np.uint8:
            probs = quantise(probs)
        parr, larr, darr, sarr = self._level(level)
        zs, ys, xs = slice(*block.z), slice(*block.y), slice(*block.x)
        probs = np.asarray(probs[:, 0] if self.two_d else probs, dtype=self.probs.dtype)
        labels = np.asarray(labels[0] if self.two_d else labels, dtype=self.labels.dtype)
        if self.two_d:
            parr[:, ys, xs] = probs
            larr[ys, xs] = labels
        else:
            parr[:, zs, ys, xs] = probs
            larr[zs, ys, xs] = labels
        if sarr is not None:
            from .._integrity import crc
            sarr[block.index] = np.array([crc(probs), crc(labels)], np.uint32)
        darr[block.index] = 1


