"""Benchmarks, in one place and launched one way: ``mpfpipe bench NAME [OPTIONS]``.

- `engine` (``mpfpipe bench engine``, also plain ``mpfpipe bench``): the fragment engine, MPF against patch mode,
  training steps and inference, one JSON object per case;
- `distributed` (``--distributed``): where the time of a distributed gradient evaluation goes, on a real cluster;
  `costmodel` fits a small cost model to such rows and projects it to larger clusters;
- `segment` (``--segment VOLUME``): whole-volume segmentation against the engine alone, the pyramid's cost, reads;
- `data`: ingest and read speed of the data layer on the real data;
- `export`: the ONNX export, and onnxruntime against `mpfpipe segment`;
- `peers` (``--peers``): the engine beside onnxruntime on the exported graph and PyTorch's dilated dense job.

A new benchmark is a module here with a function that emits dict records, and a subcommand in
`mpfpipe.cli.bench` that calls it (`BENCHMARKS` lists them). The benchmarks sit above the task packages (they
drive training, segmentation and export), so nothing below imports them. The old import paths of the engine's
benchmark stay: ``from mpfpipe.bench import run, flops``.
"""
from ..cost import flops, layer_macs
from .engine import DEFAULT_CASES, dumps, matmul_peak, run, run_case, run_isolated

__all__ = ["DEFAULT_CASES", "dumps", "flops", "layer_macs", "matmul_peak", "run", "run_case", "run_isolated"]
