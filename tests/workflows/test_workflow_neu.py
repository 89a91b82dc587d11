"""The NEU-Seg workflow's ingest step on the real strips (skipped without ../shared/data): one defect class out of
NEU-Seg's three, the ÷2 labels are the majority of each 2x2 block (ties to defect), and the seeded split is the
same at ÷1 and ÷2, so down-sampling never moves a strip between train, validation and test."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mpfpipe.data import ingest, open_dataset
from mpfpipe.workflow import load_workflow, plan

ROOT = Path(__file__).resolve().parents[2]


def test_neu_seg_ingest_on_real_strips(shared_data, tmp_path):
    root = shared_data / "neu_seg" / "val"  # 100 strips keep the test to seconds
    steps = plan(load_workflow(ROOT / "workflows" / "neu-seg-steel.yaml", {"data": str(root)}), tmp_path / "run")
    opts = {k: v for k, v in steps[0].options.items() if k not in ("id", "source")}
    assert opts["downsample"] == 2
    d2 = open_dataset(ingest([root], tmp_path / "d2.zarr", **opts))
    d1 = open_dataset(ingest([root], tmp_path / "d1.zarr", **{**opts, "downsample": 1}))
    assert d2.class_names == ["background", "defect"] and d2.n_images == 100 and all(d2.positive)
    assert {s: sorted(d2.split(s)) for s in ("train", "val", "test")} == \
        {s: sorted(d1.split(s)) for s in ("train", "val", "test")}
    assert [len(d2.split(s)) for s in ("train", "val", "test")] == [50, 25, 25]
    for i, name in enumerate(d2.names):
        mask = np.asarray(Image.open(root / "masks" / (Path(name).stem + ".png")))
        defect = (mask > 0).astype(np.uint8)  # inclusion, patches and scratches are one class
        assert np.array_equal(d1.raw_labels(i), defect)
        votes = defect.reshape(100, 2, 100, 2).sum(axis=(1, 3))
        assert np.array_equal(d2.raw_labels(i)[:100, :100], (votes >= 2).astype(np.uint8))
