"""Distributed training on Dask (Masci et al. 2013 fragment training of whole images).

Protocol of one step: the driver holds the parameters (float64) and the optimiser state; for a batch of images
it first gets their global class counts (labels only; after that epoch's augmentation) and fixes the class
weights, then every loss evaluation sends the parameter vector out once, runs one pure gradient task per chunk of
images on the workers (`chunks`: a plan that depends on the batch only; images read from Zarr once and kept
there, or streamed from Zarr for data larger than the workers' memory) and reduces the chunks' (loss, gradient)
results in a fixed tree in float64, so the result is bit-identical on any cluster. Optimisers (`optim`) take
synchronous steps; a checkpoint (`checkpoint`) is written after every step.

Modules: `chunks` (the chunk plan and tree),
`tasks` (what the workers run), `oracle` (the evaluation on Dask), `optim` (GD-Armijo, L-BFGS, SGD-Armijo, Adam),
`checkpoint`, `settings` (class weights, streaming), `report` (log, PNG, summary), `driver` (`train`). The cluster
is `mpfpipe.cluster`; the distributed timings are `mpfpipe.bench.distributed` and `mpfpipe.bench.costmodel`.
"""
from ..cluster import ClusterHandle, choose_layout, connect  # their old import path: mpfpipe.cluster now
from .driver import TrainResult, class_weights, train
from .oracle import DaskOracle, Eval, LocalOracle
from .tasks import tree_sum

__all__ = ["ClusterHandle", "DaskOracle", "Eval", "LocalOracle", "TrainResult", "choose_layout", "class_weights",
           "connect", "train", "tree_sum"]
