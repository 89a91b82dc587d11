"""The data layer: datasets in chunked Zarr v3, ingest of real image formats, synthetic data, augmentation.

Layout: see :mod:`mpfpipe.data.layout`. Typical use::

    from mpfpipe.data import ingest, open_dataset, AugmentSpec
    ingest(["train-volume.tif", "train-labels.tif"], "isbi.zarr", positive=0, class_names=["cell", "membrane"],
           split=(0.6, 0.2, 0.2))
    ds = open_dataset("isbi.zarr")
    sample = ds.read(ds.split("train")[0], augment=AugmentSpec(rotate=True), seed=1, epoch=3)
"""
from .augment import AugmentSpec, augment, crop_window, parse_augment
from .ingest import ingest
from .layout import IGNORE_INDEX
from .reader import Dataset, Sample, normalise, open_dataset
from .synth import synth_defects, synth_em

__all__ = ["AugmentSpec", "Dataset", "IGNORE_INDEX", "Sample", "augment", "crop_window", "ingest", "parse_augment",
           "normalise", "open_dataset", "synth_defects", "synth_em"]
