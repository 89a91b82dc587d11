"""Whole-volume segmentation: Zarr / OME-Zarr / dataset / TIFF in, OME-Zarr 0.5 out, blockwise on Dask, resumable.

    from mpfpipe.segment import segment
    result = segment("model.safetensors", "volume.zarr", "seg.ome.zarr")  # blocks of 1 x 1024 x 1024 for a 2D net
    print(result.summary())

See `mpfpipe.segment.run` (orchestration), `.blocks` (grid, halo mirroring, per-block compute), `mpfpipe.data.volume`
(inputs) and `.omezarr` (output layout and done markers). A folder of image files goes to `.folder` (masks and a
detection list, image by image; `.imagefiles` finds, decodes and writes the files).
"""
from .blocks import D4, DEFAULT_BLOCK, Block, block_grid, default_block, reflect
from ..errors import FolderSegmentError
from .folder import FolderResult, segment_folder
from .omezarr import read_done
from ..errors import SegmentError
from .run import SegmentResult, segment
from ..data.volume import Volume, open_volume

__all__ = ["Block", "D4", "DEFAULT_BLOCK", "FolderResult", "FolderSegmentError", "SegmentError", "SegmentResult",
           "Volume", "block_grid", "default_block", "open_volume", "read_done", "reflect", "segment", "segment_folder"]
