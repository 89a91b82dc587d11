"""Whole-volume segmentation: Zarr / OME-Zarr / dataset / TIFF in, OME-Zarr 0.5 out, blockwise on Dask, resumable.

    from mpfpipe.segment import segment
    result = segment("model.safetensors", "volume.zarr", "seg.ome.zarr", block=(1, 512, 512))
    print(result.summary())

See `mpfpipe.segment.run` (orchestration), `.blocks` (grid, halo mirroring, per-block compute), `.volume`
(inputs) and `.omezarr` (output layout and done markers). A folder of image files goes to `.folder` (masks and a
detection list, image by image; `.imagefiles` finds, decodes and writes the files).
"""
from .blocks import D4, Block, block_grid, reflect
from .folder import FolderResult, FolderSegmentError, segment_folder
from .omezarr import read_done
from .run import DEFAULT_BLOCK, SegmentError, SegmentResult, dask_client, segment
from .volume import Volume, open_volume

__all__ = ["Block", "D4", "DEFAULT_BLOCK", "FolderResult", "FolderSegmentError", "SegmentError", "SegmentResult",
           "Volume", "block_grid", "dask_client", "open_volume", "read_done", "reflect", "segment", "segment_folder"]
