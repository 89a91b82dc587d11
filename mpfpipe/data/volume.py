"""Inputs to segment: a Zarr array, an OME-Zarr image, an mpfpipe dataset (from ``ingest``), a TIFF stack or an
HDF5 dataset (``FILE.h5:DATASET``, read by hyperslab with h5py: `mpfpipe.data.hdf5`).

Every input becomes a `Volume`: shape (Z, Y, X), channel count C, dtype, optional per-slice valid sizes, voxel
size/units when known, and ``read(z0, z1, (y0, y1), (x0, x1)) -> (nz, C, ny, nx)`` raw voxels. A Volume pickles
as its path and a few numbers, so Dask workers reopen the store themselves and read only their block's region.

Accepted layouts: (Y, X) and (Z, Y, X) arrays (one channel), (Z, C, Y, X) arrays (C channels); a dataset group
(``images`` (N, C, Hmax, Wmax) with ``sizes``: slice i is image i, mirrored at its own valid size); an OME-Zarr
image group (its full-resolution level; a leading ``c`` axis of a 4D image is the channel axis); a TIFF stack is
read page by page straight from the file (no conversion copy), so it works as a lazily read (Z, Y, X) volume.
An HDF5 dataset takes the array layouts above.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError

TIFF_SUFFIXES = (".tif", ".tiff")


@dataclass
class Volume:
    kind: str          # "zarr", "dataset", "tiff", "hdf5"
    path: str          # file or store path
    array: str         # array path inside the store ("" for the root / TIFF)
    shape: tuple       # (Z, Y, X)
    channels: int
    dtype: str
    two_d: bool = False          # input was (Y, X): write (c, y, x) outputs
    channel_axis: int | None = None  # position of C in the stored array (None: no channel axis)
    sizes: list | None = None    # per-slice valid (h, w); None = whole slice
    scale: list = field(default_factory=lambda: [1.0, 1.0, 1.0])  # z, y, x voxel size
    units: dict = field(default_factory=dict)  # axis -> unit
    info: dict = field(default_factory=dict)   # extra attributes for provenance (normalisation, names, ...)
    section_context: int = 0     # K > 0: read() stacks the K sections above and below as channels (data.context)

    def __post_init__(self):
        self._arr = None
        if any(int(n) < 1 for n in self.shape):  # checked where every volume enters: no zero-size block grid
            raise DataError(f"{self.path}{':' + self.array if self.array else ''} is empty (shape "
                            f"{tuple(int(n) for n in self.shape)}): nothing to segment")

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_arr"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    @property
    def voxels(self) -> int:
        if self.sizes is not None:
            return int(sum(h * w for h, w in self.sizes))
        return int(np.prod(self.shape))

    def slice_size(self, z: int) -> tuple:
        if self.sizes is not None:
            return tuple(self.sizes[z])
        return (self.shape[1], self.shape[2])

    def with_section_context(self, k: int) -> "Volume":
        """This volume read as the input of a model with section context ``k`` (`mpfpipe.data.context`): C * (2k + 1)
        channels. Its sections must have one size (a section's maps come from its neighbours' same pixels)."""
        import dataclasses
        if self.section_context:
            raise DataError(f"{self.path} is already read with section context {self.section_context}")
        if self.sizes is not None and len({tuple(s) for s in self.sizes}) > 1:
            raise DataError(f"{self.path}: its images have different sizes, so they are not sections of one stack; "
                            "a model with section context needs a stack (Z, Y, X)")
        return dataclasses.replace(self, section_context=int(k), channels=self.channels * (2 * int(k) + 1))

    def _array(self):
        if self._arr is None and self.kind == "hdf5":
            from .hdf5 import open_dataset
            self._arr = open_dataset(self.path, self.array)  # opened once per process, read by hyperslab
        if self._arr is None:
            import zarr
            self._arr = zarr.open_array(self.path, path=self.array or None, mode="r") if self.array else \
                zarr.open_array(self.path, mode="r")
        return self._arr

    def read(self, z0: int, z1: int, yr: tuple, xr: tuple) -> np.ndarray:
        """Raw voxels (z1 - z0, C, ny, nx) in the stored dtype; an unreadable region is one DataError naming
        the input and the region (a dataset's chunks are checked against their ingest checksums)."""
        try:
            if self.section_context:
                from .context import stack_sections
                return stack_sections(lambda a, b: self._read(a, b, yr, xr), z0, z1, self.section_context,
                                      self.shape[0])
            return self._read(z0, z1, yr, xr)
        except DataError:
            raise
        except Exception as exc:  # noqa: BLE001 - blosc, tifffile, OS errors: a damaged input, named
            raise DataError(f"{self.path}{'/' + self.array if self.array else ''}: cannot read z {z0}..{z1 - 1}, "
                            f"y {yr[0]}..{yr[1] - 1}, x {xr[0]}..{xr[1] - 1} ({type(exc).__name__}: {exc})") from None

    def _read(self, z0: int, z1: int, yr: tuple, xr: tuple) -> np.ndarray:
        ys, xs = slice(*yr), slice(*xr)
        if self.kind == "dataset":
            from .reader import cached_dataset
            ds = cached_dataset(self.path)
            return np.stack([ds.chunk("images", z)[:, ys, xs] for z in range(z0, z1)])
        if self.kind == "tiff":
            import tifffile
            with tifffile.TiffFile(self.path) as tif:
                pages = [tif.pages[z].asarray()[ys, xs] for z in range(z0, z1)]
            out = np.stack(pages)
            return out[:, None] if out.ndim == 3 else np.moveaxis(out, -1, 1)
        arr = self._array()
        if self.two_d:
            out = np.asarray(arr[ys, xs])[None, None]
        elif self.channel_axis is None:
            out = np.asarray(arr[z0:z1, ys, xs])[:, None]
        elif self.channel_axis == 0:  # OME (c, z, y, x)
            out = np.moveaxis(np.asarray(arr[:, z0:z1, ys, xs]), 0, 1)
        else:  # (z, c, y, x): datasets and plain 4D arrays
            out = np.asarray(arr[z0:z1, :, ys, xs])
        return out


def _check_dtype(dtype, path) -> str:
    dtype = np.dtype(dtype)
    if dtype.kind not in "uif" or dtype.itemsize > 8:
        raise DataError(f"{path}: cannot segment voxels of type {dtype} (need integers or floats)")
    return str(dtype)


def _from_array(arr, path: str, array: str, *, channel_axis=None, scale=None, units=None,
                kind: str = "zarr") -> Volume:
    shape = tuple(int(n) for n in arr.shape)
    dtype = _check_dtype(arr.dtype, path)
    if len(shape) == 2:
        return Volume(kind, path, array, (1, *shape), 1, dtype, two_d=True, scale=scale or [1.0, 1.0, 1.0],
                      units=units or {})
    if len(shape) == 3:
        return Volume(kind, path, array, shape, 1, dtype, scale=scale or [1.0, 1.0, 1.0], units=units or {})
    if len(shape) == 4:
        ca = 1 if channel_axis is None else channel_axis
        C = shape[ca]
        zyx = tuple(n for i, n in enumerate(shape) if i != ca)
        return Volume(kind, path, array, zyx, C, dtype, channel_axis=ca, scale=scale or [1.0, 1.0, 1.0],
                      units=units or {})
    raise DataError(f"{path}: an input array must be (Y, X), (Z, Y, X) or (Z, C, Y, X), got shape {shape}")


def _open_ome(group, path: str) -> Volume:
    ms = group.attrs["ome"]["multiscales"][0]
    axes = [a["name"] if isinstance(a, dict) else a for a in ms.get("axes", [])]
    ds0 = ms["datasets"][0]
    arr = group[ds0["path"]]
    scale_all = next((t["scale"] for t in ds0.get("coordinateTransformations", []) if t.get("type") == "scale"),
                     [1.0] * arr.ndim)
    units_all = {a["name"]: a["unit"] for a in ms.get("axes", []) if isinstance(a, dict) and a.get("unit")}
    if any(a not in ("c", "z", "y", "x") for a in axes):
        raise DataError(f"{path}: OME-Zarr axes {axes} not supported (need a subset of c, z, y, x)")
    scale = [float(scale_all[axes.index(a)]) if a in axes else 1.0 for a in ("z", "y", "x")]
    units = {a: u for a, u in units_all.items() if a in ("z", "y", "x")}
    if axes == ["c", "z", "y", "x"]:
        return _from_array(arr, path, ds0["path"], channel_axis=0, scale=scale, units=units)
    if axes in (["z", "y", "x"], ["y", "x"]):
        return _from_array(arr, path, ds0["path"], scale=scale, units=units)
    if axes == ["c", "y", "x"]:
        raise DataError(f"{path}: a (c, y, x) OME-Zarr image is not supported; store it as (c, z, y, x)")
    raise DataError(f"{path}: OME-Zarr axes {axes} not supported")


def _open_dataset(path: str) -> Volume:
    from .context import CONTEXT_KEY
    from .reader import open_dataset
    ds = open_dataset(path)
    images = ds.group["images"]
    N, C, Hm, Wm = (int(n) for n in images.shape)
    vol = ds.volume or {}  # a volume dataset keeps its voxel size (the pyramid keeps z where it is coarse)
    return Volume("dataset", str(ds.path), "images", (N, Hm, Wm), C, _check_dtype(images.dtype, path),
                  channel_axis=1, sizes=None if vol else [list(s) for s in ds.sizes],
                  scale=[float(v) for v in vol.get("voxel_size", [1.0, 1.0, 1.0])],
                  units={a: vol["unit"] for a in "zyx"} if vol.get("unit") else {},
                  info={"dataset": {"normalisation": ds.normalisation, "class_names": ds.class_names,
                                    "splits": ds.attrs.get("splits"), "names": ds.names,
                                    "downsample": int(ds.attrs.get("downsample") or 1),
                                    "layout": (ds.attrs.get("provenance") or {}).get("layout"),
                                    **({CONTEXT_KEY: ds.attrs[CONTEXT_KEY]} if ds.attrs.get(CONTEXT_KEY) else {})}})


def _open_tiff(path: str) -> Volume:
    import tifffile
    with tifffile.TiffFile(path) as tif:
        pages = tif.pages
        n = len(pages)
        p0 = pages[0]
        shape = tuple(int(s) for s in p0.shape)
        dtype = _check_dtype(p0.dtype, path)
        if len(shape) == 2:
            C = 1
        elif len(shape) == 3 and shape[-1] in (3, 4) and p0.photometric is not None:
            C, shape = shape[-1], shape[:2]
        else:
            raise DataError(f"{path}: TIFF pages of shape {shape} are not supported (need (Y, X) pages)")
        for i in range(1, n):
            pi = pages[i]
            if tuple(pi.shape[:2]) != shape[:2] or np.dtype(pi.dtype) != np.dtype(dtype):
                raise DataError(f"{path}: page {i} has shape {pi.shape} / {pi.dtype}, page 0 {p0.shape} / {dtype}; "
                                f"a stack needs equal pages")
        scale, units = [1.0, 1.0, 1.0], {}
        meta = tif.imagej_metadata or {}
        try:
            xres = p0.tags["XResolution"].value
            yres = p0.tags["YResolution"].value
            if meta.get("unit") and xres[0] and yres[0]:
                scale = [float(meta.get("spacing", 1.0)), yres[1] / yres[0], xres[1] / xres[0]]
                unit = {"micron": "micrometer", "\\u00B5m": "micrometer", "um": "micrometer",
                        "nm": "nanometer", "nanometer": "nanometer", "micrometer": "micrometer"}.get(meta["unit"])
                if unit:
                    units = {"z": unit, "y": unit, "x": unit}
        except (KeyError, TypeError, ZeroDivisionError):
            pass
    return Volume("tiff", str(Path(path).absolute()), "", (n, *shape), C, dtype, scale=scale, units=units)


def _open_hdf5(source) -> Volume:
    from . import hdf5
    path, name = hdf5.resolve(source)
    with hdf5.open_file(path) as f:
        ds = f[name]
        vs = hdf5.voxel_size(ds) if ds.ndim in (2, 3) else None
        scale, units = vs if vs else (None, None)
        return _from_array(ds, path, name, scale=scale, units=units, kind="hdf5")


def open_volume(source) -> Volume:
    """Open an input to segment (see the module doc); DataError with the reason if it is none of them."""
    if isinstance(source, Volume):
        return source
    path = str(source)
    from .hdf5 import parse_spec
    if parse_spec(path) is not None:
        return _open_hdf5(path)
    p = Path(path)
    if p.suffix.lower() in TIFF_SUFFIXES:
        if not p.is_file():
            raise DataError(f"input {path} not found")
        from .sources import tiff_damage_check
        try:
            with tiff_damage_check(path):
                return _open_tiff(path)
        except DataError:
            raise
        except Exception as exc:  # noqa: BLE001 - tifffile's errors do not name the file
            raise DataError(f"{path} is not a readable TIFF ({type(exc).__name__}: {exc})") from None
    import zarr
    if not p.exists():
        raise DataError(f"input {path} not found")
    try:
        node = zarr.open(path, mode="r")
    except Exception as exc:  # noqa: BLE001 - any failure means this is not a Zarr store we can read
        raise DataError(f"{path} is neither a TIFF stack nor a readable Zarr array/group: {exc}") from None
    if isinstance(node, zarr.Array):
        return _from_array(node, str(p.absolute()), "")
    attrs = dict(node.attrs)
    if "mpfpipe_dataset" in attrs:
        return _open_dataset(path)
    if "multiscales" in attrs.get("ome", {}):
        return _open_ome(node, str(p.absolute()))
    arrays = [name for name, _ in node.arrays()]
    if len(arrays) == 1:
        return _from_array(node[arrays[0]], str(p.absolute()), arrays[0])
    raise DataError(f"{path} is a Zarr group that is neither an mpfpipe dataset nor an OME-Zarr image and holds "
                    f"{len(arrays)} arrays ({', '.join(arrays) or 'none'}); give the array's path, e.g. {path}/NAME")
