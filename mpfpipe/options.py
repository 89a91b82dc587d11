"""Every option of the API and the command line, declared once: its type and range, default, help and flag.

``OPTIONS[kind][name]`` is an `Option`. The same declaration is

- checked by the API functions (``check(kind, values)`` at their start; their signatures keep the declared
  defaults, and tests/test_options.py asserts that they are equal);
- checked by the workflow planner before any step runs (`mpfpipe.workflow.spec.plan`, so ``epochs: "abc"`` or
  ``--set n_images=abc`` fail at ``--dry-run``), which also takes the options a step may set from here;
- the CLI's option: `cli_options` makes the click options of a command from the declarations (flag, type,
  default, help), so click, the API and workflows can never disagree. A test walks every command and fails on an
  option that is not declared, or whose default or help differs.

The value types and parsers are `mpfpipe.values`.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import MpfError, OptionError
from .values import Any, Choice, Flag, Float, Int, Parsed, parse_block, parse_duration, parse_size, parse_split

OPTIMIZERS = ("gd", "lbfgs", "sgd", "adam")  # full-batch GD (Armijo), L-BFGS, mini-batch SGD (Armijo), Adam
DTYPES = ("float32", "float64")              # the fragment engine's arithmetic (reductions are float64)


@dataclass(frozen=True)
class Option:
    """One option: ``value`` (what it may be: `mpfpipe.values`), ``default`` (the API's and the CLI's), ``help``
    (the CLI's text), ``flag`` (the CLI's flag(s): None = ``--name-with-dashes``, "" = not on the CLI, or e.g.
    ``"--balance/--no-balance"``), ``api`` (a parameter of the API function; False: the CLI's own, e.g. --json),
    ``workflow`` (a workflow step may set it; False: the run decides: outputs, cluster, progress), ``cli``: more
    click settings as pairs (``type``: "file" / "dir" / "existing-dir"; ``required``, ``multiple``, ``metavar``,
    ``show_default``)."""
    value: object
    default: object = None
    help: str = ""
    flag: str | None = None
    api: bool = True
    workflow: bool = True
    cli: tuple = ()

    def describe(self) -> str:
        return self.value.describe()

    def convert(self, value):
        return self.value.convert(value)


def _opts(**kw) -> dict:
    return kw


_SPLIT = Parsed(parse_split, "train,val[,test] fractions")
_LOCAL = "Local cluster: "
_FILE = (("type", "file"),)
_SCHEDULER = Option(Any("an address or a scheduler file"), None, "Join a running Dask scheduler: its address "
                    "(tcp://host:8786) or its scheduler file (--scheduler-file is an alias).",
                    flag="--scheduler --scheduler-file", workflow=False, cli=(("metavar", "ADDRESS|FILE"),))
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
    block=Option(Parsed(parse_block, "Z,Y,X (or Y,X) block sizes", optional=False), (1, 512, 512),
                 "Block size Z,Y,X (or Y,X): one output chunk per block; a Dask task runs up to 8 consecutive "
                 "blocks, reading ahead and writing behind the forward passes (folder input: Y,X tiles of each "
                 "down-sampled image, bounding memory; the result does not depend on it)."),
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
    as_json=Option(Flag(), False, "Print the summary as JSON.", flag="--json", api=False, workflow=False),
    quiet=Option(Flag(), False, "No progress bar.", api=False, workflow=False),
)
_COMMON_CLUSTER = {"workers": Int(1, optional=True), "threads": Int(1, optional=True)}
OPTIONS: dict[str, dict] = {
    "ingest": {"positive": Int(optional=True), "mask_threshold": Int(0, 65534), "downsample": Int(1),
               "seed": Int(), "split": _SPLIT},
    "synthetic": {"n_images": Int(1), "seed": Int(), "defect_fraction": Float(0, 1),
                  "cell_size": Float(0, lo_open=True),
                  "size": Parsed(parse_size, "a size HxW", optional=False), "split": _SPLIT},
    "train": _TRAIN,
    "segment": _SEGMENT,
    "bench": {"task_seconds": Float(0, lo_open=True), "images": Int(1), "repeat": Int(1),
              "chunk_seconds": Float(0, lo_open=True), **_COMMON_CLUSTER},
    "evaluate": {"threshold": Float(0, 1), "samples": Int(1), "seed": Int(), "overlays": Int(0), "positive": Int(0),
                 "truth_positive": Int(optional=True), "ignore_index": Int(0, 255)},
}


def api_options(kind: str) -> dict:
    """name -> default of the options of ``kind`` that a workflow step may set."""
    return {n: d.default for n, d in OPTIONS[kind].items() if isinstance(d, Option) and d.api and d.workflow}


def check(kind: str, values: dict, where: str = "") -> dict:
    """Check (and normalise: numpy ints become ints) every declared option of ``kind`` present in ``values``;
    returns the checked values. Raises OptionError naming the option, the value and what is expected."""
    decl = OPTIONS[kind]
    out = {}
    for name, value in values.items():
        spec = decl.get(name)
        if spec is None:
            continue
        try:
            out[name] = spec.convert(value)
        except MpfError as exc:  # a parser's own error (it names the value): as is from the API
            if not where:
                raise
            raise OptionError(f"{where}{name}: {exc}") from None
        except (ValueError, TypeError, OverflowError):
            raise OptionError(f"{where}{name} = {value!r}: expected {spec.describe()}") from None
    return out


def click_type(kind: str, name: str):
    """A click parameter type for option ``name`` of ``kind``: the text is read as the declared type and checked
    against the same declaration (a bad value is a usage error, exit 2)."""
    import click
    spec = OPTIONS[kind][name]
    spec = getattr(spec, "value", spec)

    class _Declared(click.ParamType):
        def __init__(self):
            self.name = "integer" if getattr(spec, "kind", None) is int else "float"

        def convert(self, value, param, ctx):
            if isinstance(value, str):
                try:
                    value = int(value) if self.name == "integer" else float(value)
                except ValueError:
                    self.fail(f"{value!r}: expected {spec.describe()}", param, ctx)
            try:
                return spec.convert(value)
            except (ValueError, TypeError):
                self.fail(f"{value!r}: expected {spec.describe()}", param, ctx)

    return _Declared()


_PATH_TYPES = {"file": {"dir_okay": False}, "dir": {"file_okay": False}, "existing-dir": {"file_okay": False,
                                                                                         "exists": True}}


def cli_default(decl: Option):
    """The default as the command line has it: a tuple (a block size) as its comma-separated text."""
    if isinstance(decl.default, tuple) and not dict(decl.cli).get("multiple"):
        return ",".join(str(v) for v in decl.default)
    return decl.default


def cli_flags(kind: str, name: str) -> list[str]:
    decl = OPTIONS[kind][name]
    return decl.flag.split() if decl.flag else ["--" + name.replace("_", "-")]


def click_option(kind: str, name: str, **extra):
    """The click option of ``name`` of ``kind``, made from its declaration (``extra``: e.g. a callback)."""
    import click
    decl = OPTIONS[kind][name]
    kw = {"default": cli_default(decl), "help": decl.help, **dict(decl.cli), **extra}
    if isinstance(kw.get("type"), str):
        kw["type"] = click.Path(**_PATH_TYPES[kw["type"]])
    spec = decl.value
    if isinstance(spec, Flag) or (isinstance(spec, Choice) and spec.values == (False, True)):
        if "/" not in (decl.flag or ""):  # --x/--no-x is a boolean pair of its own
            kw["is_flag"] = True
    elif isinstance(spec, Choice):
        kw.setdefault("type", click.Choice(list(spec.values)))
    elif getattr(spec, "kind", None) in (int, float):
        kw.setdefault("type", click_type(kind, name))
    return click.option(*cli_flags(kind, name), name, **kw)


def cli_options(kind: str, **extra):
    """Decorator: every option of ``kind`` that has a CLI flag, in declaration order (``extra``: name -> more
    click settings, e.g. a callback that parses the text)."""
    names = [n for n, d in OPTIONS[kind].items() if isinstance(d, Option) and d.flag != ""]

    def decorate(f):
        for name in reversed(names):
            f = click_option(kind, name, **extra.get(name, {}))(f)
        return f
    return decorate
