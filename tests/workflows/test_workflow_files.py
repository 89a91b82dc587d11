"""Every shipped workflow parses, names only known steps / options / parameters, and resolves its inputs;
parameter substitution and --set typing; the paper workflows carry the paper's settings."""
from __future__ import annotations

from pathlib import Path

import pytest

from mpfpipe.workflow import KINDS, WorkflowError, load_workflow, parse_sets, plan

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / "workflows").glob("*.yaml"))


def fake_data(tmp_path):
    """Stand-ins for the real data paths: plan() only checks that inputs exist."""
    isbi = tmp_path / "isbi2012"
    isbi.mkdir()
    for name in ("train-volume.tif", "train-labels.tif", "test-volume.tif"):
        (isbi / name).write_bytes(b"")
    tiles = tmp_path / "magnetic_tile"
    tiles.mkdir()
    neu = tmp_path / "neu_seg"
    neu.mkdir()
    return {"isbi2012-membranes": {"data": str(isbi)}, "isbi2012-aniso": {"data": str(isbi)},
            "surface-defects": {"data": str(tiles)},
            "neu-seg-steel": {"data": str(neu)}}


def test_the_workflows_ship():
    assert {p.stem for p in WORKFLOWS} >= {"quickstart", "isbi2012-membranes", "surface-defects", "neu-seg-steel"}


def test_run_help_lists_every_shipped_workflow():
    from click.testing import CliRunner

    from mpfpipe.cli import cli
    text = CliRunner().invoke(cli, ["run", "--help"]).output
    assert [p.name for p in WORKFLOWS if p.name not in text] == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_plans(path, tmp_path):
    sets = fake_data(tmp_path).get(path.stem, {})
    wf = load_workflow(path, sets)
    assert wf.name == path.stem and wf.description
    steps = plan(wf, tmp_path / "run")
    kinds = [s.kind for s in steps]
    assert set(kinds) <= set(KINDS)
    # each chains ingest -> train -> segment -> evaluate, in that order
    assert kinds.index("ingest") < kinds.index("train") < kinds.index("segment") < kinds.index("evaluate")
    train = next(s for s in steps if s.kind == "train")
    assert train.outputs["main"] == tmp_path / "run" / "model.safetensors"
    assert train.outputs["plot"].parent == tmp_path / "run" / "train"
    ev = next(s for s in steps if s.kind == "evaluate")
    assert ev.outputs["main"] == tmp_path / "run" / "report.json"
    assert ev.outputs["overlays"] == tmp_path / "run" / "overlays"
    seg = next(s for s in steps if s.kind == "segment")
    assert seg.outputs["main"] == tmp_path / "run" / "segmentation.ome.zarr"
    assert seg.inputs["model"] == train.outputs["main"]
    # every parameter is used somewhere
    text = path.read_text()
    for name in wf.defaults:
        assert "${" + name + "}" in text, f"{path.name}: parameter {name} is never used"


def test_paper_settings(tmp_path):
    data = fake_data(tmp_path)
    isbi = plan(load_workflow(ROOT / "workflows" / "isbi2012-membranes.yaml", data["isbi2012-membranes"]),
                tmp_path / "a")
    tr = next(s for s in isbi if s.kind == "train").options
    assert tr["net"] in ("n4", "n3") and tr["optimizer"] in ("adam", "sgd", "lbfgs")
    assert all(a in tr["augment"] for a in ("flip", "rot90", "rotate"))
    assert tr["max_time"] == "2h" and tr["balance"] is False  # the budget; pixel error is the target
    segs = [s for s in isbi if s.kind == "segment"]
    tv = next(s for s in segs if str(s.inputs["input"]).endswith("test-volume.tif"))
    assert tv.options["overlays"] >= 2 and tv.outputs["overlays"] == tmp_path / "a" / "test-volume" / "overlays"
    steel = plan(load_workflow(ROOT / "workflows" / "surface-defects.yaml", data["surface-defects"]),
                 tmp_path / "b")
    ing = next(s for s in steel if s.kind == "ingest").options
    tr = next(s for s in steel if s.kind == "train").options
    ev = next(s for s in steel if s.kind == "evaluate").options
    assert ing["downsample"] == 4 and ing["split"] == [0.5, 0.25, 0.25]
    assert tr["net"] == "steel" and tr["optimizer"] == "lbfgs" and tr["balance"] is True
    assert ev["detection"] is True and ev["images"] == "test"


def test_neu_seg_settings(tmp_path):
    """The NEU-Seg workflow: one defect class out of NEU-Seg's three, ÷2, the 50/25/25 split, the steel net widened
    to a 68x68 window, by L-BFGS with the balanced loss within the 2-hour budget, test-split pixel metrics without
    image detection."""
    from mpfpipe.arch import load_net
    from mpfpipe.data.ingest import parse_label_map
    steps = plan(load_workflow(ROOT / "workflows" / "neu-seg-steel.yaml", fake_data(tmp_path)["neu-seg-steel"]),
                 tmp_path / "run")
    assert [s.kind for s in steps] == ["ingest", "train", "segment", "evaluate"]
    ing, tr, seg, ev = (s.options for s in steps)
    assert parse_label_map(ing["label_map"]) == {0: 0, 1: 1, 2: 1, 3: 1}
    assert ing["class_names"] == ["background", "defect"]
    assert ing["downsample"] == 2 and ing["split"] == [0.5, 0.25, 0.25] and ing["seed"] == tr["seed"] == 0
    net = load_net(tr["net"])  # the description in the workflow builds an exact 68x68 MPF net
    assert net.window == 68 and net.describe().startswith("steel68: 68x68 window, stride 8")
    assert [type(layer).__name__ for layer in net.layers] == ["Conv", "Pool"] * 3 + ["Conv", "FC", "FC"]
    assert tr["optimizer"] == "lbfgs" and tr["balance"] is True
    assert tr["epochs"] == 300 and tr["max_time"] == "2h" and tr["augment"] == "none"
    assert ev["images"] == "test" and ev["detection"] is False and ev["rand"] is False
    assert seg["tta"] is True  # test-time augmentation, chosen on the validation split
    assert steps[3].inputs["pred"] == steps[2].outputs["main"]


def test_real_data_paths_resolve(shared_data, tmp_path):
    for name, sub in (("isbi2012-membranes", "isbi2012"), ("surface-defects", "magnetic_tile"),
                      ("neu-seg-steel", "neu_seg")):
        wf = load_workflow(ROOT / "workflows" / f"{name}.yaml", {"data": str(shared_data / sub)})
        steps = plan(wf, tmp_path / name)
        data = shared_data / sub
        ingest = steps[0]
        assert ingest.kind == "ingest" and ingest.outputs["main"] == tmp_path / name / "data" / f"{ingest.id}.zarr"
        if name == "isbi2012-membranes":
            assert [s.kind for s in steps] == ["ingest", "train", "segment", "evaluate", "segment"]
            assert ingest.options["source"] == [f"{data}/train-volume.tif", f"{data}/train-labels.tif"]
            assert steps[-1].inputs["input"] == data / "test-volume.tif"
        else:
            assert [s.kind for s in steps] == ["ingest", "train", "segment", "evaluate"]
            assert ingest.options["source"] == [str(data)]
        assert all(Path(s).exists() for s in ingest.options["source"])
        train = steps[1]
        assert train.inputs["dataset"] == ingest.outputs["main"]
        assert steps[2].inputs == {"model": train.outputs["main"], "input": ingest.outputs["main"]}
        assert steps[3].inputs["pred"] == steps[2].outputs["main"]
        assert steps[3].inputs["truth"] == ingest.outputs["main"]


def test_parse_sets_types():
    assert parse_sets(["a=4", "b=0.5", "c=64x64", "d=[0.5, 0.5]", "e=true", "f=../x/y", "g=a=b"]) == {
        "a": 4, "b": 0.5, "c": "64x64", "d": [0.5, 0.5], "e": True, "f": "../x/y", "g": "a=b"}
    with pytest.raises(WorkflowError, match="KEY=VALUE"):
        parse_sets(["novalue"])


def test_substitution_and_references(tmp_path):
    wf = tmp_path / "w.yaml"
    wf.write_text("""
name: t
description: test
params: {n: 3, tag: abc}
steps:
  - ingest: {id: a, source: "synthetic:em", n_images: "${n}", size: 32x32}
  - ingest: {id: b, source: "synthetic:defects", n_images: 2}
  - train: {dataset: b, epochs: "${n}", net: "steel", seed: 1}
  - segment: {input: a}
  - evaluate: {}
  - segment: {id: again, input: "${run}/data/b.zarr", model: train}
""")
    (tmp_path / "run" / "data" / "b.zarr").mkdir(parents=True)
    steps = plan(load_workflow(wf, ["n=5"]), tmp_path / "run")
    assert steps[0].options["n_images"] == 5 and steps[2].options["epochs"] == 5
    assert steps[2].inputs["dataset"] == steps[1].outputs["main"]
    assert steps[3].inputs["input"] == steps[0].outputs["main"]
    assert steps[4].inputs["pred"] == steps[3].outputs["main"]
    assert steps[4].inputs["truth"] == steps[0].outputs["main"]  # the segmented dataset
    assert steps[5].outputs["main"] == tmp_path / "run" / "again.ome.zarr"


@pytest.mark.parametrize("text, message", [
    ("steps:\n  - ingest: {source: 'synthetic:em'}\n  - ingest: {source: 'synthetic:em'}\n",
     "id 'ingest' is used twice"),
    ("steps:\n  - train: {}\n", "needs 'dataset'"),
    ("steps: []\n", "non-empty list"),
    ("stpes: []\n", "unknown key"),
    ("params: {run: 1}\nsteps:\n  - train: {}\n", "reserved"),
    ("steps:\n  - ingest: {source: 'synthetic:cats'}\n", "synthetic:em"),
    ("steps:\n  - ingest: {n_images: 3}\n", "needs 'source'"),
    ("steps:\n  - train: {dataset: nowhere}\n", "neither an earlier step id"),
    ("steps:\n  - {train: {}, segment: {}}\n", "one key"),
])
def test_invalid_workflows(tmp_path, text, message):
    wf = tmp_path / "w.yaml"
    wf.write_text(text)
    with pytest.raises(WorkflowError, match=message):
        plan(load_workflow(wf), tmp_path / "run")


def test_aniso_workflow_uses_the_2d_workflows_sections(tmp_path):
    """isbi2012-aniso.yaml: the volume's splits are the sections the 2D membrane workflow's split puts in each (its
    fractions and seed, all 20 slices holding membrane), the aniso net, the same budget and loss, test scores."""
    from mpfpipe.data.splits import stratified_split
    from mpfpipe.values import parse_sections
    data = fake_data(tmp_path)
    flat = plan(load_workflow(ROOT / "workflows" / "isbi2012-membranes.yaml", data["isbi2012-membranes"]),
                tmp_path / "a")
    aniso = plan(load_workflow(ROOT / "workflows" / "isbi2012-aniso.yaml", data["isbi2012-aniso"]), tmp_path / "b")
    assert [s.kind for s in aniso] == ["ingest", "train", "segment", "evaluate", "segment"]
    ing2, ing3 = flat[0].options, aniso[0].options
    want = stratified_split([True] * 20, ing2["split"], ing2["seed"])
    assert ing3["volume"] is True and parse_sections(ing3["sections"]) == want
    assert ing3["voxel_size"] == [50, 4, 4] and ing3["voxel_unit"] == "nanometer"
    tr2, tr3 = flat[1].options, aniso[1].options
    assert tr3["net"] == "aniso" and tr3["max_time"] == tr2["max_time"] == "2h"
    assert tr3["balance"] is tr2["balance"] is False and tr3["optimizer"] == tr2["optimizer"]
    assert aniso[3].options["images"] == flat[3].options["images"] == "test"
    assert aniso[3].options["instances"] is True and aniso[3].options["tune_instances"] is True
