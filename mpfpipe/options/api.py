"""The options of the API functions: train, segment (volumes and folders), ingest and the synthetic data,
evaluate, and the distributed benchmark's measure."""
from __future__ import annotations

from ..values import (Any, Choice, Flag, Float, Int, Parsed, parse_block, parse_duration, parse_merge_classifier,
                      parse_sections, parse_size, parse_split, parse_voxel_size, SPACE_UNITS)
from .declare import _FILE, _LOCAL, _SCHEDULER, DTYPES, OPTIMIZERS, Option, _opts

_SPLIT = Parsed(parse_split, "train,val[,test] fractions")
MERGE_SCORES = ("mean", "quantile", "learned")  # the instance step's boundary scores (mpfpipe.data.agglomerate)
# mpfpipe.train.train: what to learn, where to run, what to write
_TRAIN = _opts(
    # what to learn
    net=Option(Any("a preset or a network file"), "n4", "Preset (n4, n3, steel) or a YAML/JSON network file."),
    maps=Option(Int(1, optional=True), None, "Preset nets: maps of every conv layer."),
    hidden=Option(Int(1, optional=True), None, "Preset nets: size of hidden fc layers."),
    optimizer=Option(Choice(OPTIMIZERS), "gd",
                     "Full-batch GD (Armijo), full-batch L-BFGS, mini-batch SGD (Armijo) or mini-batch Adam."),
    epochs=Option(Int(0), 10, "Passes over the training images (gd/lbfgs: one iteration each)."),
    batch_size=Option(Int(1), 1, "sgd/adam: images per step."),
    lr=Option(Float(0, lo_open=True, optional=True), None,
              "adam: the step size [1e-3]; the others: first trial step of the line search, then adapted [1]."),
    lr_halflife=Option(Float(0), 0.0, "adam: the step halves every this many epochs (0: constant)."),
    memory=Option(Int(1), 10, "lbfgs: correction pairs kept."),
    balance=Option(Flag(), True, "Class-balanced loss over the whole batch (else mean loss per labelled pixel).",
                   flag="--balance/--no-balance"),
    augment=Option(Any("'none' or a list such as 'flip,rot90'"), None,
                   "'none' or a list such as 'flip,rot90,rotate,jitter=0.05,crop=256' (seeded by seed, epoch, image; "
                   "crop=N trains on a random NxN region per image and step, exactly, with real context).",
                   cli=(("show_default", "none"),)),
    seed=Option(Int(), 0, "Weight initialisation, shuffling and augmentation seed."),
    dtype=Option(Choice(DTYPES), "float32", "Arithmetic of the fragment engine (reduction is always float64)."),
    gtol=Option(Float(0), 0.0, "gd/lbfgs: stop when |gradient| < gtol."),
    validate_every=Option(Int(1), 1, "Validate every N epochs."),
    train_split=Option(Any("a split"), "train", "Split to train on, or a union such as 'train+val'."),
    val_split=Option(Any("a split"), "val", "Validation split ('' for none)."),
    chunk_seconds=Option(Float(0, lo_open=True), 0.5, "Estimated one-thread seconds of a gradient task (the chunk "
                         "plan: part of the run's identity, since it fixes the summation order).", flag=""),
    unit=Option(Parsed(parse_block, "Z,Y,X sizes of a volume unit", optional=False), (4, 128, 128),
                "3D nets on a volume dataset: the output block (z, y, x) of one gradient unit (each computed with "
                "its input halo; their gradients add up to the whole volume's)."),
    # where to run
    workers=Option(Int(1, optional=True), None, _LOCAL + "worker processes [default: cores // threads].",
                   workflow=False),
    threads=Option(Int(1, optional=True), None, _LOCAL + "Numba/BLAS threads per worker [default: cores // workers].",
                   workflow=False),
    scheduler=_SCHEDULER,
    scheduler_file=Option(Any("a scheduler file"), None, "A scheduler file (the CLI's --scheduler takes one too).",
                          flag="", workflow=False),
    host=Option(Any("an interface"), "127.0.0.1", _LOCAL + "interface to listen on.", workflow=False),
    timeout=Option(Float(0, lo_open=True), 10.0, "Seconds to reach the scheduler."),
    stream=Option(Flag(optional=True), None, "Read each image from Zarr in its task instead of holding the data on "
                  "the workers (automatic when the data would need > 25 % of the workers' memory)."),
    client=Option(Any("a distributed Client"), None, "Use this Dask client instead of starting / joining a cluster.",
                  flag="", workflow=False),
    reproducible=Option(Flag(), False, "The same bits on workers with different CPUs (AVX2 and AVX-512 nodes): "
                        "fixed-order GEMMs instead of OpenBLAS, whose kernel depends on the CPU "
                        "(MPFPIPE_REPRODUCIBLE=1 does the same)."),
    # what to write
    out=Option(Any("a path"), "model.safetensors", "Model file (.safetensors).", workflow=False,
               cli=_FILE + (("required", True),)),
    checkpoint=Option(Any("a path"), None, "Checkpoint file [default: OUT stem + .ckpt.npz].", workflow=False,
                      cli=_FILE),
    log=Option(Any("a path"), None, "JSON-lines log [default: OUT stem + .log.jsonl].", workflow=False, cli=_FILE),
    plot=Option(Any("a path"), None, "Loss-curve PNG [default: OUT stem + .loss.png].", workflow=False, cli=_FILE),
    resume=Option(Flag(), False, "Continue the run of the checkpoint (same options).", workflow=False),
    stop=Option(Flag(), False, "With --resume: end a paused run at its checkpoint, without another step, and write "
                "its best model."),
    overwrite=Option(Flag(), False, "Replace an existing model / start a new run over a checkpoint.", workflow=False),
    max_steps=Option(Int(1, optional=True), None,
                     "Stop after this many steps (checkpointed; continue with --resume)."),
    max_time=Option(Parsed(parse_duration, "a duration such as 7200, 90m or 2h"), None,
                    "Training-time budget over the whole run (resumes included), e.g. 7200, 90m, 2h: no step starts "
                    "once it is spent; the best model is written."),
    progress=Option(Flag(), True, "Show a progress bar.", flag="--progress/--no-progress", workflow=False),
    echo=Option(Any("a callable"), None, "Called with each progress message.", flag="", workflow=False),
)
# mpfpipe.segment.segment (and segment_folder, which takes the same but quantize and levels)
_SEGMENT = _opts(
    block=Option(Parsed(parse_block, "Z,Y,X (or Y,X) block sizes"), None,
                 "Block size Z,Y,X (or Y,X) [default: 1,1024,1024 for a 2D net, 1,512,512 for a 3D one]: one "
                 "output chunk per block; a block also computes the net's halo around itself, so larger blocks "
                 "waste less (n3: 13 % more pixels at 1024 x 1024, 27 % at 512 x 512); a Dask task runs up to 8 "
                 "consecutive blocks, reading ahead and writing behind the forward passes; an existing output keeps "
                 "its own blocks (folder input: Y,X tiles of each down-sampled image, bounding memory; the result "
                 "does not depend on it)."),
    workers=Option(Int(0, optional=True), None,
                   "Local worker processes (default: one per core; 0 = no Dask, run in this process).",
                   workflow=False),
    threads=Option(Int(1, optional=True), None, "Kernel threads per worker (default: cores / workers)."),
    scheduler=_SCHEDULER,
    overwrite=Option(Flag(), False, "Replace an existing OUTPUT (otherwise an unfinished one resumes).",
                     workflow=False),
    quantize=Option(Flag(), False, "Store probabilities as uint8 (round(255 p)) instead of float32."),
    threshold=Option(Float(0, 1, optional=True), None, "Label = p[positive class] > THRESHOLD instead of the arg-max."),
    positive=Option(Int(0), 1, "Class index that --threshold applies to."),
    progress=Option(Flag(), True, "Show a progress bar (the CLI: --quiet for none).", flag="", workflow=False),
    dtype=Option(Choice(DTYPES), "float32", "Arithmetic of the forward pass.", flag=""),
    levels=Option(Int(1, optional=True), None, "Pyramid levels including full resolution, each halving y and x "
                  "(default: down to a smaller side <= 256 pixels; 1 = no pyramid)."),
    tta=Option(Choice((False, True)), False, "Test-time augmentation: average the class probabilities over the 8 "
               "flips and 90-degree turns (8x the compute; exact for any block size)."),
    detect_threshold=Option(Float(0, optional=True), None, "Folder input: flag an image when its mask has more "
                            "defect pixels than this (source pixels) [default: the model's rule chosen on "
                            "validation, else 0]."),
    include=Option(Any("globs"), (), "Folder input: segment only images whose path relative to FOLDER matches "
                   "(repeatable), e.g. '*.jpg' to leave out the magnetic tiles' PNG masks.",
                   cli=(("multiple", True), ("metavar", "GLOB"))),
    exclude=Option(Any("globs"), (), "Folder input: leave out matching images (repeatable).",
                   cli=(("multiple", True), ("metavar", "GLOB"))),
    instances=Option(Flag(), False, "Also write labels/instances: one id per object (seeded watershed of the "
                     "membrane probability, region merging, minimum size), blockwise with ids joined across block "
                     "faces; on a complete OUTPUT of the same model and input only this step runs. Its parameters: "
                     "the options below, else the model's 'instances' metadata, else the defaults.", api=False,
                     workflow=False),
    instance_threshold=Option(Float(0, 1, optional=True), None, "Instances: membrane probability below which a "
                              "pixel is cell [0.4].", api=False, workflow=False),
    instance_seed_distance=Option(Int(1, optional=True), None, "Instances: minimal distance in pixels between two "
                                  "seeds (maxima of the distance transform) [12].", api=False, workflow=False),
    instance_merge_threshold=Option(Float(0, 1, optional=True), None, "Instances: join touching objects whose "
                                    "boundary score is below this [0.15].", api=False, workflow=False),
    instance_agglomeration=Option(Choice(("hierarchical", "one-shot"), optional=True), None, "Instances: region "
                                  "merging, lowest boundary first with re-scoring, or all at once [hierarchical].",
                                  api=False, workflow=False),
    instance_merge_score=Option(Choice(MERGE_SCORES, optional=True), None, "Instances: a boundary's score, the mean "
                                "or a percentile of its membrane probability, or 'learned': the model's merge "
                                "classifier (fitted by evaluate --tune-instances) [quantile].", api=False,
                                workflow=False),
    instance_merge_quantile=Option(Int(0, 100, optional=True), None, "Instances: the percentile that scores a "
                                   "boundary [5].", api=False, workflow=False),
    instance_smooth=Option(Float(0, optional=True), None, "Instances: Gaussian sigma applied to the membrane "
                           "probability first [0].", api=False, workflow=False),
    instance_min_size=Option(Int(1, optional=True), None, "Instances: objects smaller than this (pixels per "
                             "section) are absorbed by their neighbours [30].", api=False, workflow=False),
    instance_margin=Option(Int(1, optional=True), None, "Instances: context margin in pixels around each block "
                           "[32].", api=False, workflow=False),
    instance_block=Option(Parsed(parse_block, "Z,Y,X (or Y,X) block sizes", optional=True), None,
                          "Instances: block Z,Y,X of the instance step [the segmentation's block, y and x each "
                          "times the smallest whole number that reaches 1024].", api=False, workflow=False),
    link_slices=Option(Flag(optional=True), None, "Instances: link the objects of consecutive sections into 3-D "
                       "objects by overlap.", api=False, workflow=False),
    instance_link_overlap=Option(Float(0, 1, optional=True), None, "Instances with --link-slices: the overlap "
                                 "(fraction of the smaller object) that links [0.5].", api=False, workflow=False),
    as_json=Option(Flag(), False, "Print the summary as JSON.", flag="--json", api=False, workflow=False),
    quiet=Option(Flag(), False, "No progress bar.", api=False, workflow=False),
)
# the instance step, mpfpipe.segment.instances (segment --instances, a workflow's segment step): its parameters as
# its API names them (mpfpipe.data.watershed reads its defaults from here)
_INSTANCES = _opts(
    # defaults: the best of evaluate's TUNE_GRID on the ISBI membrane workflow's val sections (n3, 2 hours)
    threshold=Option(Float(0, 1), 0.4, "Membrane probability below which a pixel is cell."),
    seed_distance=Option(Int(1), 12, "Minimal distance in pixels between two seeds."),
    merge_threshold=Option(Float(0, 1), 0.15, "Join touching objects whose boundary score (merge_score) is below "
                           "this."),
    agglomeration=Option(Choice(("hierarchical", "one-shot")), "hierarchical", "Region merging: 'hierarchical' "
                         "joins the lowest-scoring boundary first and re-scores the merged object's boundaries "
                         "(waterz); 'one-shot' scores the watershed's boundaries once and joins all below the "
                         "threshold."),
    merge_score=Option(Choice(MERGE_SCORES), "quantile", "The score of a boundary: the mean of its membrane "
                       "probability, its merge_quantile-th percentile, or 'learned': merge_classifier's probability "
                       "that the two objects are different (mpfpipe.data.merge_learn)."),
    merge_classifier=Option(Parsed(parse_merge_classifier, "a fitted merge classifier (numbers)"), None,
                            "merge_score 'learned': the fitted classifier, as `evaluate --tune-instances` writes it "
                            "into the model.", flag=""),
    merge_quantile=Option(Int(0, 100), 5, "The percentile of the boundary probability that scores it (merge_score "
                          "quantile; 50 = the median)."),
    smooth=Option(Float(0), 0.0, "Gaussian sigma in pixels applied to the membrane probability first (0 = none)."),
    min_size=Option(Int(1), 30, "Objects smaller than this (pixels per section) are absorbed."),
    link_slices=Option(Choice((False, True)), False, "Link the objects of consecutive sections by overlap."),
    link_overlap=Option(Float(0, 1), 0.5, "The overlap (fraction of the smaller object) that links."),
    margin=Option(Int(1), 32, "Context margin in pixels around each block."),
    block=Option(Parsed(parse_block, "Z,Y,X (or Y,X) block sizes", optional=True), None,
                 "Block Z,Y,X of the instance step (default: the segmentation's, y and x each times the smallest "
                 "whole number that reaches 1024: the context margin then adds at most 13 % to a block's pixels).",
                 workflow=False),
    workers=Option(Int(0, optional=True), None, "Local worker processes.", workflow=False),
    threads=Option(Int(1, optional=True), None, "Kernel threads per worker.", workflow=False),
)
# mpfpipe.data.ingest, synth_em and synth_defects (the CLI's ingest command is not generated from these yet)
_WRITE = _opts(overwrite=Option(Flag(), False, "Replace OUTPUT if it exists.", workflow=False),
               progress=Option(Flag(), False, "Show a progress bar on stderr.", workflow=False))
MAX_CONTEXT = 8  # sections each side (mpfpipe.data.context); more reads a lot of input for one section's maps
_INGEST = _opts(
    label_map=Option(Any("a label map"), None,
                     "Source label value -> class id, e.g. '0:1,255:0' (or 'ignore'); every value must be mapped."),
    positive=Option(Int(optional=True), None,
                    "Source label value that becomes class 1, all others class 0 (ISBI membranes: 0)."),
    mask_threshold=Option(Int(0, 65534), 127, "Masks with values >= 32: class 1 where value > threshold "
                          "(anti-aliased masks)."),
    downsample=Option(Int(1), 1, "Integer down-sampling factor (block mean for images, block majority for labels)."),
    split=Option(_SPLIT, None, "Train,val[,test] fractions, stratified by 'image holds a defect/positive pixel' "
                 "(default: all images in train)."),
    seed=Option(Int(), 0, "Seed of the split and of synthetic data."),
    **_WRITE,
    class_names=Option(Any("class names"), None, "Comma-separated names of class ids 0, 1, ..."),
    volume=Option(Flag(), False, "The stack is one (z, y, x) volume: chunked in z too, split by z sections "
                  "(--split fractions as contiguous z ranges, or --sections)."),
    sections=Option(Parsed(parse_sections, "sections such as 'train=0-11,val=12-15,test=16-19'"), None,
                    "--volume: the z sections of each split, e.g. 'train=0-1,4-8,val=3,9,test=2,10'."),
    voxel_size=Option(Parsed(parse_voxel_size, "a Z,Y,X voxel size such as 50,4,4"), None,
                      "--volume: voxel size Z,Y,X (ISBI 2012: 50,4,4) [default: the source's, if recorded]."),
    voxel_unit=Option(Choice(SPACE_UNITS, optional=True), None, "--volume: unit of --voxel-size (an OME-NGFF unit, "
                      "e.g. nanometer)."),
    section_context=Option(Int(0, MAX_CONTEXT), 0, "A stack: each image also holds the K sections above and "
                           "below as extra input maps (2.5-D; a 2D net trained on it reads them, and segment "
                           "stacks them from a plain volume itself)."),
)
_SYNTH = _opts(n_images=Option(Int(1), 8, "synthetic: number of images."),
               size=Option(Parsed(parse_size, "a size HxW", optional=False), (256, 256), "synthetic: image size HxW."),
               seed=_INGEST["seed"], split=_INGEST["split"], **_WRITE)
_COMMON_CLUSTER = {"workers": Int(1, optional=True), "threads": Int(1, optional=True)}
TABLES: dict[str, dict] = {
    "ingest": _INGEST,
    "synth_em": {**_SYNTH, "cell_size": Option(Float(0, lo_open=True), 40.0, "synthetic:em: mean cell size.")},
    "synth_defects": {**_SYNTH, "n_images": Option(Int(1), 16, "synthetic: number of images."),
                      "size": Option(_SYNTH["size"].value, (128, 128), "synthetic: image size HxW."),
                      "defect_fraction": Option(Float(0, 1), 0.3, "synthetic:defects: fraction of images with a "
                                                "defect."),
                      "variable_size": Option(Flag(), False, "synthetic:defects: draw each image size in "
                                              "[size/2, size].")},
    "train": _TRAIN,
    "segment": _SEGMENT,
    "instances": _INSTANCES,
    "bench": {"task_seconds": Float(0, lo_open=True), "images": Int(1), "repeat": Int(1),
              "chunk_seconds": Float(0, lo_open=True), **_COMMON_CLUSTER},
    "evaluate": _opts(
        output=Option(Any("a folder"), None, "Folder for report.json and overlay PNGs.", flag="--output -o",
                      workflow=False),
        image=Option(Any("a volume"), None, "Raw volume for the overlays (default: the segmented input).",
                     workflow=False),
        truth_positive=Option(Int(optional=True), None,
                              "Value of the positive class in a TRUTH label stack (ISBI 2012: 0 = membrane)."),
        positive=Option(Int(0), 1, "Class id of the positive (membrane / defect) class."),
        threshold=Option(Float(0, 1), 0.5, "p(positive) above which a pixel is positive."),
        # the ISBI script's sweep 0.0, 0.1, ..., 1.0: equal to evaluate.metrics.DEFAULT_THRESHOLDS (tested)
        thresholds=Option(Any("probabilities"), tuple(round(0.1 * i, 1) for i in range(11)),
                          "Thresholds of the V_rand sweep.", flag=""),
        samples=Option(Int(1), 5000, "Pixels per class for the balanced error."),
        seed=Option(Int(), 0, "Seed of the balanced error's draw."),
        splits=Option(Any("image indices"), None, "Detection's val / test image indices (default: the truth "
                      "dataset's splits).", flag="", workflow=False),
        ignore_index=Option(Int(0, 255), 255, "Truth label value that is not scored.", flag=""),
        overlays=Option(Int(0), 4, "Number of overlay slices."),
        rand=Option(Flag(), True, "The threshold sweeps (the CLI: --no-rand skips them).", flag=""),
        overwrite=Option(Flag(), False, "Replace an existing report.", workflow=False),
        groups=Option(Any("group names"), None, "A source group per image for a per-group table (default: the truth "
                      "dataset's folders).", flag=""),
        images=Option(Any("splits or indices"), None, "Evaluate only these images: split names of a TRUTH dataset "
                      "(test, val,test) or indices (0-9,12); detection keeps its val / test splits."),
        instances=Option(Flag(), False, "Score the instance segmentation (PRED's labels/instances, or an instance "
                         "label stack): adapted Rand error, VOI split / merge, CREMI score and the ISBI thinned "
                         "scores, in report['instances']. TRUTH: an instance label stack (TIFF / Zarr / "
                         "FILE.h5:DATASET) or a class-label dataset."),
        tune_instances=Option(Flag(), False, "Choose the instance parameters (merge score and threshold, seed "
                              "distance; the learned merge score is fitted on the train split) on the TRUTH "
                              "dataset's val split by the official thinned V_rand, in "
                              "report['instances_chosen'], and write them into the model PRED was made with, "
                              "which `segment --instances` then uses."),
    ),
}


TABLES["synthetic"] = {**TABLES["synth_em"], **TABLES["synth_defects"]}  # either kind's values (for checks)
