"""Ingest and read benchmark of the data layer on the real data: ``mpfpipe bench data [DATA_DIR]``.

DATA_DIR defaults to ``../shared/data`` beside the repository. Reports, per dataset: ingest time, images/s,
MB/s of decoded pixels and of source files, on-disk size vs the raw (decoded, unpadded) pixels and vs the source
files, and the median time to read one image (one chunk) with ``Dataset.raw_image``.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np


def _bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def bench(name, sources, out, **kw) -> dict:
    from ..data import ingest, open_dataset
    t0 = time.perf_counter()
    ingest(sources, out, **kw)
    dt = time.perf_counter() - t0
    ds = open_dataset(out)
    raw = sum(h * w for h, w in ds.sizes) * ds.channels * ds.dtype.itemsize
    src = sum(_bytes(s) if Path(s).is_dir() else Path(s).stat().st_size for s in sources)
    disk = _bytes(out)
    rng = np.random.default_rng(0)
    times = []
    for i in rng.integers(0, ds.n_images, 30):
        t = time.perf_counter()
        ds.raw_image(int(i))
        times.append(time.perf_counter() - t)
    return {"name": name, "n": ds.n_images, "s": dt, "img_s": ds.n_images / dt, "mb_s": raw / dt / 1e6,
            "src_mb_s": src / dt / 1e6, "raw_mb": raw / 1e6, "src_mb": src / 1e6, "disk_mb": disk / 1e6,
            "read_ms": 1e3 * float(np.median(times))}


DATASETS = {  # name -> (sources under DATA_DIR, ingest options)
    "isbi2012": (["isbi2012/train-volume.tif", "isbi2012/train-labels.tif"], {"positive": 0}),
    "magnetic_tile": (["magnetic_tile"], {}),
    "neu_seg": (["neu_seg"], {}),
}
DEFAULT_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def run(data=None, datasets=tuple(DATASETS)) -> list[dict]:
    """Ingest each of ``datasets`` from DATA_DIR ``data`` into a temporary store and time it (see `bench`)."""
    from ..errors import DataError
    data = Path(data) if data is not None else DEFAULT_DATA
    if not data.exists():
        raise DataError(f"no data at {data}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in datasets:
            sources, kw = DATASETS[name]
            rows.append(bench(name, [data / s for s in sources], Path(tmp) / f"{name}.zarr", **kw))
    return rows


def table(rows) -> str:
    lines = [f"{'dataset':14} {'images':>6} {'time s':>7} {'img/s':>7} {'MB/s':>6} {'srcMB/s':>7} {'raw MB':>7} "
             f"{'src MB':>7} {'disk MB':>7} {'disk/raw':>8} {'read ms':>7}"]
    for r in rows:
        lines.append(f"{r['name']:14} {r['n']:6d} {r['s']:7.2f} {r['img_s']:7.1f} {r['mb_s']:6.1f} "
                     f"{r['src_mb_s']:7.1f} {r['raw_mb']:7.2f} {r['src_mb']:7.2f} {r['disk_mb']:7.2f} "
                     f"{r['disk_mb'] / r['raw_mb']:8.2f} {r['read_ms']:7.2f}")
    return "\n".join(lines)
