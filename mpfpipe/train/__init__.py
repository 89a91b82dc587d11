"""Distributed training on Dask (Masci et al. 2013 fragment training of whole images).

Protocol of one step: the driver holds the parameters (float64) and the optimiser state; for a batch of images
it first gets their global class counts (labels only; after that epoch's augmentation) and fixes the class
weights, then every loss evaluation broadcasts the parameter vector once, runs one pure gradient task per image
on the workers (images read from Zarr once and kept there, or streamed from Zarr for data larger than the workers'
memory) and reduces the per-image (loss, gradient) results in a fixed binary tree ordered by image index, in
float64. Optimisers (`optim`) take synchronous steps; a checkpoint (`checkpoint`) is written after every step.

Modules: `cluster` (LocalCluster / join a scheduler, threads per worker), `oracle` (tasks and tree reduction),
`optim` (GD-Armijo, L-BFGS, SGD-Armijo), `checkpoint`, `report` (log, PNG, summary), `driver` (`train`).
"""
from .cluster import ClusterHandle, choose_layout, connect
from .driver import TrainResult, class_weights, train
from .oracle import DaskOracle, Eval, LocalOracle, tree_sum

__all__ = ["ClusterHandle", "DaskOracle", "Eval", "LocalOracle", "TrainResult", "choose_layout", "class_weights",
           "connect", "train", "tree_sum"]
