"""HDF5 inputs named ``FILE.h5:DATASET`` (e.g. ``sample_A.h5:volumes/raw``, as CREMI ships them), read with h5py.

A dataset is opened lazily and read by hyperslab (``dataset[z0:z1, y0:y1, x0:x1]``), so only the requested region
(and the HDF5 chunks it touches) is ever read: whole volumes are never loaded. ``FILE.h5`` alone names the file's
only dataset. Every problem (missing file, not HDF5, missing dataset, a group instead of a dataset, several
datasets and none chosen) is a DataError of one line naming the file and, where known, the dataset.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import DataError

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")
_SPEC = re.compile(r"^(?P<file>.*?\.(?:h5|hdf5|hdf|he5))(?::(?P<dataset>.*))?$", re.IGNORECASE)


def parse_spec(source) -> tuple[str, str] | None:
    """(file, dataset) of an HDF5 source ``FILE.h5[:DATASET]`` (dataset "" if not given); None if not HDF5."""
    m = _SPEC.match(str(source))
    if not m:
        return None
    return m.group("file"), (m.group("dataset") or "").strip("/")


def _datasets(f) -> list[str]:
    import h5py
    names = []
    f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


def _listing(names: list[str]) -> str:
    more = f", ... ({len(names)} in all)" if len(names) > 8 else ""
    return ", ".join(names[:8]) + more if names else "none"


def open_file(path: str):
    """An h5py File opened read-only; DataError if it is missing or not HDF5."""
    import h5py
    p = Path(path)
    if not p.is_file():
        raise DataError(f"input {path} not found")
    try:
        return h5py.File(p, "r")
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file ({exc})") from None


def resolve(source) -> tuple[str, str]:
    """(absolute file path, dataset name) of ``FILE.h5[:DATASET]``, checked to exist (DataError otherwise)."""
    spec = parse_spec(source)
    if spec is None:
        raise DataError(f"{source}: not an HDF5 source (FILE.h5:DATASET)")
    path, name = spec
    import h5py
    with open_file(path) as f:
        if not name:
            names = _datasets(f)
            if len(names) != 1:
                raise DataError(f"{path} holds {len(names)} datasets ({_listing(names)}): name one as "
                                f"{path}:DATASET")
            name = names[0]
        obj = f.get(name)
        if obj is None:
            raise DataError(f"{path} has no dataset {name!r}; its datasets: {_listing(_datasets(f))}")
        if not isinstance(obj, h5py.Dataset):
            inner = [f"{name}/{n}" for n in _datasets(obj)]
            raise DataError(f"{path}:{name} is a group, not a dataset; datasets in it: {_listing(inner)}")
        check_filters(obj, f"{path}:{name}")
    return str(Path(path).absolute()), name


def check_filters(ds, source: str) -> None:
    """Refuse, where the dataset enters, one whose compression filter is not installed: HDF5 would fail on the
    first chunk read, inside a worker, with "can't read data" and no filter named."""
    import h5py
    plist = ds.id.get_create_plist()
    for i in range(plist.get_nfilters()):
        code, _, _, name = plist.get_filter(i)
        if not h5py.h5z.filter_avail(code):  # even an "optional" one: its chunks were written through it
            label = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
            raise DataError(f"{source} is compressed with the HDF5 filter {code} ({label or 'unnamed'}), which is "
                            "not installed here: install its plugin (e.g. pip install hdf5plugin and import it, or "
                            "set HDF5_PLUGIN_PATH) or rewrite the dataset without it")


def open_dataset(path: str, name: str):
    """The h5py Dataset ``name`` of ``path`` (its file stays open as long as the dataset is referenced)."""
    return open_file(path)[name]


def voxel_size(ds) -> tuple[list, dict] | None:
    """(z, y, x) voxel size and units from common attributes: ``element_size_um`` (ilastik, Fiji) in micrometres,
    or ``resolution`` (CREMI, in its own units, often nm, which HDF5 does not record); None if neither."""
    for key, unit in (("element_size_um", "micrometer"), ("resolution", None)):
        value = ds.attrs.get(key)
        try:
            vals = [float(v) for v in value]
        except (TypeError, ValueError):
            continue
        if len(vals) >= 2:
            vals = ([1.0] * 3 + vals)[-3:]
            return vals, ({a: unit for a in "zyx"} if unit else {})
    return None


class Stack:
    """An HDF5 image or label stack for ``ingest``, read one slice at a time: ``shape`` as `sources.load_stack`
    gives it ((N, C, H, W) images, (N, H, W) labels / masks), ``stack[i]`` reads slice i only."""

    def __init__(self, source, kind: str):
        path, name = resolve(source)
        self.source, self.kind = f"{path}:{name}", kind
        self._ds = open_dataset(path, name)
        shape = tuple(int(n) for n in self._ds.shape)
        self._layout = None
        if kind == "images":
            if len(shape) == 2:
                self._layout, shape = "one", (1, 1, *shape)
            elif len(shape) == 3:
                self._layout, shape = "grey", (shape[0], 1, *shape[1:])
            elif len(shape) == 4 and shape[-1] <= 4 < shape[1]:
                self._layout, shape = "last", (shape[0], shape[3], shape[1], shape[2])
            elif len(shape) != 4:
                raise DataError(f"{source}: image stack of shape {shape}; expected (N, H, W) or (N, C, H, W)")
        else:
            if len(shape) == 2:
                self._layout, shape = "one", (1, *shape)
            if len(shape) != 3:
                raise DataError(f"{source}: {kind} stack of shape {shape}; expected (N, H, W)")
        self.shape = shape
        self.ndim = len(shape)

    def __getitem__(self, i: int):
        import numpy as np
        if not 0 <= i < self.shape[0]:
            raise IndexError(i)
        if self._layout == "one":
            a = self._ds[()]
        else:
            a = self._ds[i]
        if self.kind == "images":
            if self._layout in ("one", "grey"):
                a = a[None]
            elif self._layout == "last":
                a = np.moveaxis(a, -1, 0)
        return np.ascontiguousarray(a)
