"""PyTorch's dense job for `mpfpipe bench --peers`: run with a Python that has torch (torch is never a dependency
of mpfpipe, and this file imports nothing from it), as ``PYTHON _torch_dense.py SPEC.json WEIGHTS.npz``.

The net is built "a trous", the way the ONNX export builds it: every convolution and pool after a pool of size p is
dilated by the product of the pools before it, pools have stride 1, and the first fc layer is a convolution over
the remaining e x e map. On the mirror-padded (H'+w-1) x (W'+w-1) input this computes what the fragment engine
computes, the same multiply-adds in another order. A 3D net (``spec["ndim"] == 3``) runs conv3d / max_pool3d with
per-axis dilations (z, y, x) on a (Z', Y', X') volume, as the 3D export does. Prints one JSON line: median seconds
of inference and of a training step (forward, summed per-pixel cross-entropy, backward to every weight).
"""
import json
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as tnf


def _act(x, name):
    if name == "tanh":
        return torch.tanh(x)
    if name == "stanh":
        return 1.7159 * torch.tanh(x * (2.0 / 3.0))
    if name == "relu":
        return torch.relu(x)
    return x


def _forward(spec, weights, x):
    if spec.get("ndim", 2) == 3:
        dz, d = 1, 1
        for op in spec["ops"]:
            if op["type"] == "conv":
                x = _act(tnf.conv3d(x, weights[op["name"] + ".weight"], weights[op["name"] + ".bias"],
                                    dilation=(dz, d, d)), op["act"])
            else:
                x = tnf.max_pool3d(x, (op["pz"], op["p"], op["p"]), stride=1, dilation=(dz, d, d))
                dz, d = dz * op["pz"], d * op["p"]
        return x
    d = 1
    for op in spec["ops"]:
        if op["type"] == "conv":
            x = _act(tnf.conv2d(x, weights[op["name"] + ".weight"], weights[op["name"] + ".bias"], dilation=d),
                     op["act"])
        else:
            x = tnf.max_pool2d(x, op["p"], stride=1, dilation=d)
            d *= op["p"]
    return x


def _median(fn, repeat):  # as mpfpipe.bench.export.median_time: this file runs where mpfpipe is not installed
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(spec_path, weights_path):
    spec = json.loads(open(spec_path).read())
    torch.set_num_threads(spec["threads"])
    with np.load(weights_path) as z:
        weights = {k: torch.from_numpy(z[k]) for k in z.files}
    # per axis: the size rounded up to the stride, plus the window's context (as the engine pads)
    padded = [-(-n // s) * s + w - 1 for n, s, w in zip(spec["size"], spec["stride"], spec["window"])]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, spec["in_channels"], *padded, generator=gen)
    labels = torch.randint(0, spec["n_classes"], (1, *[n - w + 1 for n, w in zip(padded, spec["window"])]),
                           generator=gen)
    out = {"torch_version": torch.__version__, "threads": torch.get_num_threads()}
    if "infer" in spec["phases"]:
        with torch.inference_mode():
            out["infer_s"] = _median(lambda: torch.softmax(_forward(spec, weights, x), dim=1), spec["repeat"])
    if "train" in spec["phases"]:
        for t in weights.values():
            t.requires_grad_(True)

        def step():
            for t in weights.values():
                t.grad = None
            loss = tnf.cross_entropy(_forward(spec, weights, x), labels, reduction="sum")
            loss.backward()
        out["train_s"] = _median(step, spec["repeat"])
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
