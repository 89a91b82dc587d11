"""`evaluate --tune-instances` writes the instance parameters it chose on the val split into the model the
segmentation was made with (a verified safetensors file with a new digest), and a later `segment --instances`
with that model uses them, its options still winning. Real files end to end through the CLI: an EM-like dataset
with a val split, a model file, segment's OME-Zarr output."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mpfpipe.cli import main
from mpfpipe.data.synth import synth_em
from mpfpipe.data.watershed import DEFAULTS, SECTION
from mpfpipe.model import Model, load_model, read_metadata, save_model
from mpfpipe.segment import instance_store

TUNED = SECTION


def _run(capsys, *args) -> str:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert exc.value.code == 0, out + err
    return out


@pytest.fixture
def segmented(tmp_path, capsys):
    """(model path, dataset path, output path) of a 2-class model segmenting a 2-image dataset (val = image 1)."""
    from mpfpipe.arch import preset
    from mpfpipe.params import init_params
    synth_em(tmp_path / "ds.zarr", n_images=2, size=(64, 64), seed=0, split=(0.5, 0.5))
    net = preset("n4", maps=3, hidden=6)
    model = save_model(Model(net, init_params(net, 0), class_names=["cell", "membrane"],
                             normalisation={"mean": [128.0], "std": [50.0]}), tmp_path / "m.safetensors")
    _run(capsys, "segment", model, tmp_path / "ds.zarr", tmp_path / "o.ome.zarr", "--block", "1,32,32",
         "--workers", "0", "--quiet")
    return model, tmp_path / "ds.zarr", tmp_path / "o.ome.zarr"


def test_tuned_parameters_go_into_the_model_and_segment_uses_them(segmented, tmp_path, capsys):
    model, ds, out = segmented
    sha_before = read_metadata(model)["sha256"]
    _run(capsys, "evaluate", out, ds, "--tune-instances", "--no-rand", "-o", tmp_path / "ev")
    chosen = json.loads((tmp_path / "ev" / "report.json").read_text())["instances_chosen"]
    assert chosen["model"] == str(model.absolute()) and chosen["images"] == [1]
    params = chosen["parameters"]
    assert {k: params[k] for k in TUNED} != {k: DEFAULTS[k] for k in TUNED}  # else the test would prove nothing
    m = load_model(model)  # verifies the digest, which changed with the metadata
    assert read_metadata(model)["sha256"] != sha_before
    assert {k: m.instances[k] for k in TUNED} == params
    assert m.instances["chosen_on"] == "val" and m.instances["v_rand_thinned"] == chosen["v_rand_thinned"]
    # tuning again on the same output: the rewritten file is still the model that made it
    _run(capsys, "evaluate", out, ds, "--tune-instances", "--no-rand", "-o", tmp_path / "ev", "--overwrite")
    assert json.loads((tmp_path / "ev" / "report.json").read_text())["instances_chosen"]["model"] == str(
        model.absolute())

    # a later segment --instances reads them from the model ...
    _run(capsys, "segment", model, ds, tmp_path / "a.ome.zarr", "--block", "1,32,32", "--workers", "0", "--quiet",
         "--instances")
    used = instance_store.labels_state(tmp_path / "a.ome.zarr")["settings"]
    assert {k: used[k] for k in TUNED} == params and used["margin"] == DEFAULTS["margin"]
    # ... and an option given wins over the model
    other = 0.5 if params["merge_threshold"] != 0.5 else 0.3
    _run(capsys, "segment", model, ds, tmp_path / "b.ome.zarr", "--block", "1,32,32", "--workers", "0", "--quiet",
         "--instances", "--instance-merge-threshold", other)
    used = instance_store.labels_state(tmp_path / "b.ome.zarr")["settings"]
    assert used["merge_threshold"] == other and used["seed_distance"] == params["seed_distance"]


def test_a_model_that_is_gone_or_replaced_is_not_written(segmented, tmp_path, capsys):
    from mpfpipe.arch import preset
    from mpfpipe.params import init_params
    model, ds, out = segmented
    shutil.move(model, tmp_path / "moved.safetensors")
    _run(capsys, "evaluate", out, ds, "--tune-instances", "--no-rand", "-o", tmp_path / "ev")
    chosen = json.loads((tmp_path / "ev" / "report.json").read_text())["instances_chosen"]
    assert chosen["model"] is None and "is gone" in chosen["not_written"]
    net = preset("n4", maps=3, hidden=6)  # another model (other weights, saved later) at the same path
    save_model(Model(net, init_params(net, 1), class_names=["cell", "membrane"],
                     normalisation={"mean": [0.0], "std": [1.0]}), model)
    before = model.read_bytes()
    _run(capsys, "evaluate", out, ds, "--tune-instances", "--no-rand", "-o", tmp_path / "ev", "--overwrite")
    chosen = json.loads((tmp_path / "ev" / "report.json").read_text())["instances_chosen"]
    assert chosen["model"] is None and "no longer the model" in chosen["not_written"]
    assert model.read_bytes() == before and np.isfinite(chosen["v_rand_thinned"])


def test_parameters_chosen_before_hierarchical_merging_keep_their_meaning(segmented, tmp_path, capsys):
    from mpfpipe.model import set_instances
    model, ds, _ = segmented
    # what `evaluate --tune-instances` wrote before agglomeration / merge_score existed: one-shot mean merging
    set_instances(model, {"threshold": 0.5, "seed_distance": 5, "merge_threshold": 0.3, "min_size": 30})
    _run(capsys, "segment", model, ds, tmp_path / "a.ome.zarr", "--block", "1,32,32", "--workers", "0", "--quiet",
         "--instances")
    used = instance_store.labels_state(tmp_path / "a.ome.zarr")["settings"]
    assert (used["agglomeration"], used["merge_score"], used["merge_threshold"]) == ("one-shot", "mean", 0.3)


def test_the_learned_score_is_fitted_on_train_and_competes_on_val():
    """choose_parameters with training sections: the percentile grid, then the learned score (fitted on them at
    each threshold and seed distance) at every LEARNED_THRESHOLDS; the best official V_rand on val wins, and a
    learned winner carries its classifier (the numbers segment then uses)."""
    from cellgrid import cell_grid
    from mpfpipe.evaluate.instances import LEARNED_THRESHOLDS, TUNE_GRID, choose_parameters
    from mpfpipe.evaluate import official
    (vp, vt), (tp, tt) = cell_grid(10), cell_grid(11)
    grid = {"threshold": (0.4,), "merge_threshold": (0.1, 0.3), "merge_quantile": (5,), "seed_distance": (3, 12)}
    got = choose_parameters([vp], [vt], grid=grid, train=([tp], [tt]))
    assert got["learned"] == {"tried": True, "fitted_on": "1 training section(s)"}
    rows = got["grid"]
    assert len(rows) == 4 + 2 * len(LEARNED_THRESHOLDS)
    assert [r["merge_score"] for r in rows] == ["quantile"] * 4 + ["learned"] * 10
    best = max(rows, key=lambda r: (r["v_rand_thinned"], r["v_info_thinned"]))
    assert got["v_rand_thinned"] == best["v_rand_thinned"]
    p = got["parameters"]
    assert (p["merge_classifier"] is not None) == (p["merge_score"] == "learned")
    # the score reported is that of the parameters returned
    from mpfpipe.data.watershed import section_instances
    assert official.instance_scores([section_instances(vp, **p)], [vt])["v_rand_thinned"] == got["v_rand_thinned"]
    # without training sections: the grid alone, and why
    alone = choose_parameters([vp], [vt], grid=grid)
    assert len(alone["grid"]) == 4 and alone["learned"]["tried"] is False
    assert set(TUNE_GRID) == set(grid)
