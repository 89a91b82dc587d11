"""Where the instance step keeps its work and its result inside a segmentation output (see `instances`).

    OUTPUT/
      labels/                    attrs "ome": {"labels": ["segmentation", "instances"]}
        instances/               attrs "ome": NGFF 0.5 multiscales + "image-label" (source ../../, 0 transparent);
          0, 1, ...              attrs "mpfpipe": settings, token, n_objects, complete
                                 (Z, Y, X) uint32 (uint64 beyond 2^32 - 1 objects) ids, 0 = none; the pyramid
                                 takes the mode of 2 x 2 windows (`pyramid.halve_mode`), as for labels/segmentation
      done_instances_<l>         per-block done markers of level l of labels/instances
      checksums_instances_<l>    CRC-32 of each block's chunk of level l, written before its done marker
      instances_work/            attrs "mpfpipe": settings, token; removed once labels/instances is complete
        fragments                (Z, Y, X) uint32 block-local ids (pass 1), one chunk per block
        done_fragments           their done markers
        blocks/<iz>_<iy>_<ix>.npz  a block's id count, its face strips and its z-links (written before its marker)
        mapping.npy              global id of every provisional id (pass 2)

Every file is written whole and atomically (temp file + rename; Zarr's local store does the same per chunk), and
only by the block that owns it; the driver alone writes ``mapping.npy`` and the attributes.
"""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import numpy as np

NAME = "instances"
WORK = "instances_work"


def done_name(level: int) -> str:
    return f"done_instances_{level}"


def checksums_name(level: int) -> str:
    return f"checksums_instances_{level}"


def _compressors(fast: bool = False):
    from zarr.codecs import BloscCodec, BloscShuffle
    if fast:  # the work's fragments, written once and read once: lz4 costs a fraction of zstd's time
        return [BloscCodec(cname="lz4", clevel=1, shuffle=BloscShuffle.bitshuffle)]
    return [BloscCodec(cname="zstd", clevel=3, shuffle=BloscShuffle.bitshuffle)]


def _array(group, name, shape, chunks, dtype, dims=None, fill=0, compress=True, fast=False):
    return group.create_array(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill,
                              compressors=_compressors(fast) if compress else None, dimension_names=dims,
                              overwrite=True)


def remove(path) -> None:
    """Remove everything the instance step wrote (its labels, markers, checksums and work), nothing else."""
    import zarr
    root = zarr.open_group(str(path), mode="r+")
    p = Path(path)
    for rel in [WORK, f"labels/{NAME}", *[n for n in root.array_keys() if n.startswith(("done_instances_",
                                                                                        "checksums_instances_"))]]:
        if (p / rel).exists():
            shutil.rmtree(p / rel)
    labels = root["labels"]
    ome = dict(labels.attrs.get("ome") or {})
    if NAME in ome.get("labels", []):
        ome["labels"] = [n for n in ome["labels"] if n != NAME]
        labels.attrs["ome"] = ome


def create_work(path, shape, chunk, grid, settings: dict) -> str:
    import zarr
    root = zarr.open_group(str(path), mode="r+")
    work = root.create_group(WORK, overwrite=True)
    _array(work, "fragments", shape, chunk, np.uint32, fast=True)
    _array(work, "done_fragments", grid, (1, 1, 1), np.uint8, compress=False)
    (Path(path) / WORK / "blocks").mkdir(exist_ok=True)
    token = uuid.uuid4().hex
    work.attrs["mpfpipe"] = {"settings": settings, "token": token}
    return token


def work_state(path) -> dict | None:
    import zarr
    root = zarr.open_group(str(path), mode="r")
    return dict(root[WORK].attrs.get("mpfpipe") or {}) if WORK in root else None


def block_file(path, index) -> Path:
    return Path(path) / WORK / "blocks" / ("_".join(map(str, index)) + ".npz")


def save_atomic(target: Path, write) -> None:
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)


def create_labels(path, *, shape, chunk, levels: int, dtype, two_d: bool, scale, units, settings: dict,
                  token: str, n_objects: int, zlevels=()) -> None:
    """The final label image (empty), its markers and checksums, and the OME-Zarr labels metadata."""
    import zarr

    from .blocks import grid_shape
    from .omezarr import _axes, _multiscales
    from .pyramid import level_chunk, level_shape
    root = zarr.open_group(str(path), mode="r+")
    labels = root["labels"]
    inst = labels.create_group(NAME, overwrite=True)
    dims = ["y", "x"] if two_d else ["z", "y", "x"]
    for lv in range(levels):
        lshape, lchunk = level_shape(shape, lv, zlevels), level_chunk(shape, chunk, lv, zlevels)
        sshape, schunk = (lshape[1:], lchunk[1:]) if two_d else (lshape, lchunk)
        _array(inst, str(lv), sshape, schunk, dtype, dims)
        grid = grid_shape(lshape, lchunk)
        _array(root, done_name(lv), grid, (1, 1, 1), np.uint8, compress=False)
        _array(root, checksums_name(lv), grid, (1, 1, 1), np.uint32, compress=False)
    meta = _multiscales(NAME, _axes(two_d, False, units), list(scale[1:] if two_d else scale), levels, zlevels)
    # NGFF 0.5 image-label: 0 (no object: outside an image's valid size) transparent; the objects get the viewer's
    # own colours (napari's labels layer, neuroglancer's segmentation layer) rather than a list of millions here
    meta["image-label"] = {"version": "0.5", "colors": [{"label-value": 0, "rgba": [0, 0, 0, 0]}],
                           "properties": [{"label-value": 0, "object": "none"}], "source": {"image": "../../"}}
    inst.attrs["ome"] = meta
    inst.attrs["mpfpipe"] = {"settings": settings, "token": token, "n_objects": int(n_objects),
                             "dtype": np.dtype(dtype).name, "levels": levels, "block": list(chunk),
                             "complete": False}
    ome = dict(labels.attrs.get("ome") or {"version": "0.5", "labels": []})
    if NAME not in ome.get("labels", []):
        ome["labels"] = [*ome.get("labels", []), NAME]
    labels.attrs["ome"] = ome


def labels_state(path) -> dict | None:
    import zarr
    root = zarr.open_group(str(path), mode="r")
    if "labels" not in root or NAME not in root["labels"]:
        return None
    return dict(root["labels"][NAME].attrs.get("mpfpipe") or {})


def set_labels_complete(path, complete: bool = True) -> None:
    import zarr
    inst = zarr.open_group(str(path), mode="r+")["labels"][NAME]
    meta = dict(inst.attrs["mpfpipe"])
    meta["complete"] = complete
    inst.attrs["mpfpipe"] = meta


def read_done(path, name: str) -> np.ndarray:
    import zarr
    return np.asarray(zarr.open_array(str(path), path=name, mode="r")[...]) != 0
