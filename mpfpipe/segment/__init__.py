"""Whole-volume segmentation: Zarr / OME-Zarr / dataset / TIFF in, OME-Zarr 0.5 out, blockwise on Dask, resumable.

    from mpfpipe.segment import segment
    result = segment("model.safetensors", "volume.zarr", "seg.ome.zarr", block=(1, 512, 512))
    print(result.summary())

See `mpfpipe.segment.run` (orchestration), `.blocks` (grid, halo mirroring, per-block compute), `.volume`
(inputs) and `.omezarr` (output layout and done markers).
"""
from .blocks import Block, block_grid, reflect
from .omezarr import read_done
from .run import DEFAULT_BLOCK, SegmentError, SegmentResult, dask_client, segment
from .volume import Volume, open_volume

__all__ = ["Block", "DEFAULT_BLOCK", "SegmentError", "SegmentResult", "Volume", "block_grid", "dask_client",
           "open_volume", "read_done", "reflect", "segment"]
