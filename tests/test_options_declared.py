"""Each option declared once (mpfpipe.options): the API signatures carry the declared defaults, the CLI's options
are the declared ones (flag, default, help), and the workflow planner takes a step's options from them."""
from __future__ import annotations

import inspect

import click
import pytest

from mpfpipe.cli import cli
from mpfpipe.options import OPTIONS, Option, OptionError, api_options, cli_default, cli_flags, cli_options, check

# command -> the declarations its options come from
DECLARED = {name: name for name in ("train", "segment", "run", "export", "info", "warmup", "bench engine",
                                    "bench distributed", "bench segment", "bench data", "bench export",
                                    "bench costmodel", "bench peers")} | {"ingest": "ingest command",
                                                                          "evaluate": "evaluate command"}
CLICK_OWN = {"help", "config", "version"}


def _commands(group=cli, prefix=""):
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", cmd


def problems(name: str, cmd: click.Command, kind: str) -> list[str]:
    """What differs between the command's options and the declarations of ``kind``."""
    out = []
    for p in cmd.params:
        if not isinstance(p, click.Option) or p.name in CLICK_OWN:
            continue
        decl = OPTIONS[kind].get(p.name)
        if not isinstance(decl, Option) or decl.flag == "":
            out.append(f"{name} {p.opts[0]}: not declared in OPTIONS[{kind!r}]")
            continue
        flags = [f for part in cli_flags(kind, p.name) for f in part.split("/")]
        if sorted(p.opts + p.secondary_opts) != sorted(flags):
            out.append(f"{name} {p.opts[0]}: flags {p.opts + p.secondary_opts} are not the declared {flags}")
        if p.default != cli_default(decl) and not p.required:
            out.append(f"{name} {p.opts[0]}: default {p.default!r} is not the declared {cli_default(decl)!r}")
        if p.help != decl.help:
            out.append(f"{name} {p.opts[0]}: help {p.help!r} is not the declared {decl.help!r}")
    return out


def test_every_command_takes_its_options_from_the_declarations():
    names = {name for name, _ in _commands()}
    assert names == set(DECLARED), "a new command: declare its options and list it in DECLARED"
    found = [msg for name, cmd in _commands() if name in DECLARED for msg in problems(name, cmd, DECLARED[name])]
    assert found == []


def test_the_walk_fails_on_a_hand_typed_option():
    @click.command()
    @cli_options("segment")
    @click.option("--threads", "threads", type=int, default=None, help="Threads.")  # help differs
    @click.option("--frobnicate", is_flag=True, help="Not declared anywhere.")
    def fake(**kw):
        pass
    found = problems("segment", fake, "segment")
    assert any("--frobnicate: not declared" in m for m in found)
    assert any("--threads: help 'Threads.' is not the declared" in m for m in found)
    retyped = [p for p in fake.params if p.name == "positive"][0]
    retyped.default = 2
    assert any("--positive: default 2 is not the declared 1" in m for m in problems("segment", fake, "segment"))


def _api(kind):
    from mpfpipe.data import ingest, synth_defects, synth_em
    from mpfpipe.evaluate import evaluate
    from mpfpipe.segment import segment, segment_folder
    from mpfpipe.train import train
    return {"train": [train], "segment": [segment, segment_folder], "ingest": [ingest], "synth_em": [synth_em],
            "synth_defects": [synth_defects], "evaluate": [evaluate]}[kind]


@pytest.mark.parametrize("kind", ["train", "segment", "ingest", "synth_em", "synth_defects", "evaluate"])
def test_the_api_signatures_carry_the_declared_defaults(kind):
    declared = {n: d for n, d in OPTIONS[kind].items() if d.api}
    for fn in _api(kind):
        fn = inspect.unwrap(fn)
        params = {n: p for n, p in inspect.signature(fn).parameters.items() if p.default is not inspect._empty}
        assert set(params) - set(declared) == set(), f"{fn.__name__}: undeclared parameters"
        missing = set(declared) - set(params)
        assert missing == ({"quantize", "levels"} if fn.__name__ == "segment_folder" else set())
        for n, p in params.items():
            assert p.default == declared[n].default, f"{fn.__name__}({n}={p.default!r}): declared " \
                                                     f"{declared[n].default!r}"


def test_train_declares_every_parameter_and_groups_them():
    from mpfpipe.train import train
    params = list(inspect.signature(inspect.unwrap(train)).parameters)
    # in the declarations' order: what to learn, where to run, what to write
    assert len(params) == 40 and params[1:] == [n for n, d in OPTIONS["train"].items() if d.api]


def test_the_workflow_options_are_the_declared_ones():
    assert set(api_options("train")) == {
        "net", "maps", "hidden", "optimizer", "epochs", "batch_size", "lr", "lr_halflife", "memory", "balance",
        "augment", "seed", "dtype", "gtol", "validate_every", "train_split", "val_split", "chunk_seconds", "unit",
        "timeout",
        "stream", "reproducible", "stop", "max_steps", "max_time"}
    assert set(api_options("segment")) == {"block", "threads", "quantize", "threshold", "positive", "dtype",
                                           "levels", "tta", "detect_threshold", "include", "exclude"}
    assert set(api_options("ingest")) == {"label_map", "positive", "mask_threshold", "downsample", "split", "seed",
                                          "class_names", "volume", "sections", "voxel_size", "voxel_unit",
                                          "section_context"}
    assert set(api_options("evaluate")) == {"truth_positive", "positive", "threshold", "thresholds", "samples",
                                            "seed", "ignore_index", "overlays", "rand", "groups", "images",
                                            "instances", "tune_instances"}
    assert set(api_options("synth_em")) == {"n_images", "size", "seed", "split", "cell_size"}
    assert set(api_options("synth_defects")) == {"n_images", "size", "seed", "split", "defect_fraction",
                                                 "variable_size"}


@pytest.mark.parametrize("kind, name, value", [("train", "balance", 1), ("train", "stream", "yes"),
                                               ("segment", "block", "1,0,5"), ("segment", "block", "big")])
def test_new_declarations_check_their_values(kind, name, value):
    with pytest.raises(OptionError, match=f"^step: {name}"):
        check(kind, {name: value}, where="step: ")
