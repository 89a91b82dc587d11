"""The options of the commands that are not one API function: run, export, info, warmup and the benchmarks."""
from __future__ import annotations

from dataclasses import replace

from ..values import Any, Choice, Flag, Float, Int
from .api import TABLES as _API
from .declare import _LOCAL, _SCHEDULER, DTYPES, Option, cli_only


def _cli(**options) -> dict:
    return {name: cli_only(o) for name, o in options.items()}


_JSON = Option(Flag(), False, "Print the summary as JSON.", flag="--json")
_WORKERS = Option(Int(1, optional=True), None, _LOCAL + "worker processes [default: one per core].")
_THREADS = Option(Int(1, optional=True), None, _LOCAL + "Numba/BLAS threads per worker [default: cores // workers].")
_NET = Option(Any("a preset or a network file"), "steel", "Preset or architecture file.")
_REPEAT = Option(Int(1), 5, "Timed runs per case (median reported).")
_MULTI = (("multiple", True),)

_I, _EM = _API["ingest"], _API["synth_em"]
TABLES: dict[str, dict] = {
    # one command over ingest, synth_em and synth_defects: their declarations, with the command's own defaults
    "ingest command": _cli(
        **{n: _I[n] for n in ("label_map", "positive", "mask_threshold", "class_names", "downsample", "split",
                              "seed", "volume", "sections", "voxel_size", "voxel_unit",
                              "section_context")},
        n_images=replace(_EM["n_images"], default=None, help="synthetic: number of images [default: em 8, "
                         "defects 16]."),
        size=replace(_EM["size"], default=None, help="synthetic: image size HxW [default: em 256x256, defects "
                     "128x128]."),
        defect_fraction=_API["synth_defects"]["defect_fraction"],
        variable_size=_API["synth_defects"]["variable_size"],
        overwrite=_I["overwrite"],
        progress=replace(_I["progress"], default=True, flag="--progress/--no-progress"),
    ),
    # the evaluate command: evaluate()'s declarations, --val / --test (its splits) and --no-rand (its rand)
    "evaluate command": _cli(
        **{n: _API["evaluate"][n] for n in ("output", "image", "truth_positive", "positive", "threshold", "samples",
                                            "seed")},
        val=Option(Any("image indices"), None, "Validation image indices for detection, e.g. 0-9,12 (default: the "
                   "truth dataset's split)."),
        test=Option(Any("image indices"), None, "Test image indices for detection."),
        images=_API["evaluate"]["images"],
        overlays=_API["evaluate"]["overlays"],
        no_rand=Option(Flag(), False, "Skip the threshold sweeps (V_rand; the thinned V_rand, V_info and VOI)."),
        instances=_API["evaluate"]["instances"],
        tune_instances=_API["evaluate"]["tune_instances"],
        overwrite=_API["evaluate"]["overwrite"],
    ),
    "run": _cli(
        set=Option(Any("KEY=VALUE"), (), "Override a workflow parameter (repeatable), e.g. --set iterations=10 (in "
                   "--config: a list such as set: [iterations=10, size=64x64]).", cli=_MULTI),
        out=Option(Any("a folder"), None, "Run folder [default: runs/<workflow name>].", cli=(("type", "dir"),)),
        scheduler=_SCHEDULER,
        workers=Option(Int(1, optional=True), None, _LOCAL + "worker processes [default: one per core]; with a "
                       "scheduler: wait for this many."),
        threads=_THREADS,
        resume=Option(Flag(), False, "Continue an existing run folder: finished steps are skipped."),
        overwrite=Option(Flag(), False, "Clear an existing run folder and start again."),
        dry_run=Option(Flag(), False, "Check the workflow and print the resolved steps; run nothing."),
        json=Option(Flag(), False, "Print the summary as JSON instead of Markdown."),
        progress=Option(Flag(), True, "Show progress bars.", flag="--progress/--no-progress"),
    ),
    "export": _cli(
        fmt=Option(Choice(("auto", "onnx", "bioimageio")), "auto", "auto: bioimageio for a .zip OUTPUT, else onnx.",
                   flag="--format"),
        opset=Option(Int(13), 17, "ONNX opset of the graph (onnx format)."),
        name=Option(Any("a name"), None, "bioimageio: model name [default: mpfpipe NET]."),
        authors=Option(Any("names"), (), "bioimageio: author name (repeatable) [default: unknown].", flag="--author",
                       cli=_MULTI),
        license_=Option(Any("an SPDX identifier"), "CC-BY-4.0", "bioimageio: SPDX license of the weights.",
                        flag="--license"),
        sample=Option(Any("an image file"), None, "bioimageio: image whose top-left 128x128 crop is the test input "
                      "[default: seeded noise].", cli=(("type", "existing-file"),)),
        overwrite=Option(Flag(), False, "Replace an existing OUTPUT."),
        as_json=Option(Flag(), False, "Print the summary as JSON (onnx format).", flag="--json"),
    ),
    "info": _cli(
        json=Option(Flag(), False, "Print everything as JSON."),
        verify=Option(Flag(), False, "Datasets and segmentations: read every chunk back and compare it with the "
                      "checksum recorded when it was written (exit 1 if damaged)."),
    ),
    "warmup": _cli(
        dtypes=Option(Choice(DTYPES), (), "Compute dtype(s) to compile for (repeatable) [default: float32, what "
                      "training and segmentation use].", flag="--dtype", cli=_MULTI),
        variants=Option(Choice(("serial", "parallel")), (), "Kernel builds to compile (repeatable): serial, what a "
                        "process running one thread calls (the default cluster's workers), or parallel, for more "
                        "threads [default: both].", flag="--variant", cli=_MULTI),
    ),
    "bench engine": _cli(
        nets=Option(Any("nets"), (), "Preset or architecture file (repeatable). Default: all cases.", flag="--net",
                    cli=_MULTI),
        sizes=Option(Any("sizes"), (), "Image size HxW, ZxYxX for a 3D net (repeatable).", flag="--size", cli=_MULTI),
        modes=Option(Choice(("mpf", "patch")), (), "Fragment mode over whole images and/or the patch-mode baseline "
                     "(default both).", flag="--mode", cli=_MULTI),
        phases=Option(Choice(("train", "infer")), (), "Training step (forward+backward) and/or inference (default "
                      "both).", flag="--phase", cli=_MULTI),
        repeat=_REPEAT,
        batch=Option(Int(1), 256, "Windows per patch-mode batch."),
        peak=Option(Flag(), True, "Also measure numpy's float32 matmul peak.", flag="--peak/--no-peak"),
    ),
    "bench distributed": _cli(
        net=_NET,
        size=Option(Any("HxW"), "137x60", "Image size HxW (synthetic images)."),
        simulate=Option(Flag(), False, "Tasks sleep --task-seconds per image (no kernels)."),
        task_seconds=Option(Float(0, lo_open=True), 0.005, "--simulate: seconds per image of a simulated gradient "
                            "task."),
        images=Option(Int(1), 256, "Images per evaluation."),
        repeat=Option(Int(1), 5, "Timed evaluations (medians reported)."),
        workers=_WORKERS,
        threads=_THREADS,
        scheduler=_SCHEDULER,
        dataset=Option(Any("a dataset"), None, "Real gradients on this dataset's images [default: synthetic EM of "
                       "--size].", cli=(("type", "existing-dir"),)),
    ),
    "bench segment": _cli(
        net=Option(Any("a preset or a network file"), "n3", "Preset or architecture file (random weights)."),
        size=Option(Any("HxW"), "512x512", "Image size HxW of the engine's case."),
        block=replace(_API["segment"]["block"], help="Segment's block Z,Y,X (or Y,X) [default: segment's own]; "
                      "when its Y,X is not --size the engine is also timed on one block."),
        workers=_WORKERS,
        threads=_THREADS,
        repeat=Option(Int(1), 2, "Segment runs with and without the pyramid (medians reported)."),
        engine_repeat=Option(Int(1), 5, "Timed runs per engine case."),
        workdir=Option(Any("a folder"), None, "Where the outputs are written (a temporary folder in it, removed at "
                       "the end).", cli=(("type", "existing-dir"),)),
        instances=Option(Flag(), False, "Also time the instance step (labels/instances, as segment --instances) "
                         "on each output with the pyramid: its seconds and its share of segment's time."),
        model=Option(Any("a model file"), None, "Segment with this model (its net replaces --net) instead of random "
                     "weights: the instance step's cost depends on the probabilities it is given.",
                     cli=(("type", "existing-file"),)),
    ),
    "bench data": _cli(
        datasets=Option(Choice(("isbi2012", "magnetic_tile", "neu_seg")), (), "Only these datasets (repeatable) "
                        "[default: all three].", flag="--dataset", cli=_MULTI),
        as_json=Option(Flag(), False, "One JSON object per dataset instead of the table.", flag="--json"),
    ),
    "bench export": _cli(
        net=Option(Any("nets"), "steel,n3,n4", "Comma-separated presets or network files."),
        size=Option(Any("HxW"), "512x512", "Slice size HxW."),
        slices=Option(Int(1), 4, "Slices of the segmented volume."),
        repeat=_REPEAT,
        threads=Option(Int(1, optional=True), None, "onnxruntime intra-op threads [default: cores]."),
        cluster=Option(Flag(), True, "Also time segment on the default LocalCluster.", flag="--cluster/--no-cluster"),
    ),
    "bench peers": _cli(
        nets=Option(Any("nets"), (), "Preset or architecture file (repeatable) [default: n4, n3, steel].",
                    flag="--net", cli=_MULTI),
        sizes=Option(Any("sizes"), (), "Image size HxW, or ZxYxX for a 3D net (repeatable) [default: 512x512].",
                     flag="--size", cli=_MULTI),
        phases=Option(Choice(("train", "infer")), (), "Training step and/or inference (default both).",
                      flag="--phase", cli=_MULTI),
        repeat=_REPEAT,
        threads=Option(Int(1, optional=True), None, "Threads of the engine, onnxruntime (intra-op) and PyTorch "
                       "[default: Numba's]."),
        torch_python=Option(Any("a Python"), None, "A Python that has torch (default: this one, if it has).",
                            cli=(("type", "existing-file"),)),
        rounds=Option(Int(1), 3, "Rounds of timing the engine and its peers in turn (rotating order); ratios are "
                      "the medians of the per-round ratios."),
    ),
    "bench costmodel": _cli(
        workers=Option(Any("worker counts"), "2,4,8,16,32", "Comma-separated worker counts of the simulated grid."),
        repeat=Option(Int(1), 3, "Evaluations per grid point."),
        steel_seconds=Option(Float(0, lo_open=True), 0.012, "Measured one-thread seconds of a steel 137x60 training "
                             "step (mpfpipe bench engine)."),
        n4_seconds=Option(Float(0, lo_open=True), 6.6, "Measured one-thread seconds of an n4 512x512 training step "
                          "(mpfpipe bench engine)."),
        rows=Option(Any("a JSON file"), None, "Fit these saved rows (the JSON --out wrote) instead of measuring.",
                    cli=(("type", "existing-file"),)),
        out=Option(Any("a path"), None, "Write the fit, projections and rows.", cli=(("type", "file"),)),
    ),
}
