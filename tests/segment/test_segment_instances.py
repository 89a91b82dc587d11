"""Blockwise instance segmentation (segment.instances): objects crossing block faces and corners are not cut, two
block sizes and any worker count give the same ids, a killed run resumes to identical ids, the OME-Zarr labels
metadata reads back, bad inputs give one line. The membrane probabilities are written into a real segmentation
output with segment's own writer, so that the objects are known; one test runs the whole CLI with a model."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import zarr

from mpfpipe.errors import DataError, OutputExistsError
from mpfpipe.evaluate import instance_metrics
from mpfpipe.options import OptionError
from mpfpipe.segment import omezarr
from mpfpipe.segment.blocks import block_grid
from mpfpipe.segment import instances as instances_module
from mpfpipe.segment.instances import default_block, label_instances
from mpfpipe.segment.pyramid import compute_level_block, level_blocks
from mpfpipe.data.volume import open_volume


@pytest.fixture(autouse=True)
def segmentation_sized_blocks(monkeypatch):
    """These tests cut their 96 x 96 sections at the segmentation's 16- and 32-pixel blocks, to have faces and
    corners to cross: the default instance block (`default_block`, at least 1024 pixels a side) would be one
    block. ``test_default_block_is_whole_segmentation_blocks_of_at_least_1024`` tests the default itself."""
    monkeypatch.setattr(instances_module, "MIN_BLOCK_SIDE", 1)


def test_default_block_is_whole_segmentation_blocks_of_at_least_1024(cells, tmp_path, monkeypatch):
    monkeypatch.setattr(instances_module, "MIN_BLOCK_SIDE", 1024)
    assert default_block((1, 512, 512)) == (1, 1024, 1024)
    assert default_block([2, 300, 1024]) == (2, 1200, 1024)
    assert default_block((1, 2048, 1000)) == (1, 2048, 2000)
    assert default_block((1, 1, 1025)) == (1, 1024, 1025)
    assert default_block((1, 32)) == (1, 32)  # malformed: left for label_instances to refuse with its message
    probs, _ = cells
    out = _segmentation(tmp_path / "o.ome.zarr", probs, (1, 32, 32))
    res = label_instances(out, workers=0, progress=False)
    assert res.blocks == 2  # one per section: 1024 x 1024 covers the 96 x 96 section
    assert zarr.open_group(str(out), mode="r")["labels/instances/0"].chunks == (1, 96, 96)
    monkeypatch.setattr(instances_module, "MIN_BLOCK_SIDE", 1)
    again = label_instances(out, workers=0, progress=False, overwrite=True)
    assert again.blocks == 18 and again.n_objects == res.n_objects


def _cells(shape=(2, 96, 96), seed=0, width=1.2):
    """Membrane probability of a Voronoi cell map (0.9 on 2-3 px boundaries, 0.1 inside, noise 0.03) whose seeds
    include the corners and face centres of a 32-pixel block grid, so that cells straddle faces and corners;
    the truth ids (0 on membranes) are the same in every section."""
    rng = np.random.default_rng(seed)
    Z, Y, X = shape
    grid = [(y, x) for y in (32, 64) for x in (32, 64)] + [(16, 32), (32, 80), (64, 48), (80, 64)]
    seeds = np.concatenate([np.array(grid, float) + 0.3, rng.uniform(0, [Y, X], size=(22, 2))])
    yy, xx = np.mgrid[:Y, :X]
    d = np.sqrt((yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2)
    order = np.argsort(d, axis=-1)
    ds = np.take_along_axis(d, order, -1)
    memb = (ds[..., 1] - ds[..., 0]) < width
    p = np.clip(np.where(memb, 0.9, 0.1) + rng.normal(0, 0.03, (Z, Y, X)), 0, 1).astype(np.float32)
    return p, np.broadcast_to(np.where(memb, 0, order[..., 0] + 1), (Z, Y, X)).copy()


def _segmentation(out, probs, block, levels=2, classes=("cell", "membrane")):
    """A complete segmentation output holding ``probs`` as the membrane class, written by segment's Writer."""
    vp = out.with_name(out.name + ".input.zarr")
    zarr.save_array(str(vp), (probs * 255).astype(np.uint8))
    volume = open_volume(str(vp))
    chunk = tuple(min(b, n) for b, n in zip(block, volume.shape))
    meta = {"settings": {"positive": 1}, "model": {},
            "input": {"path": volume.path, "shape": list(volume.shape), "sizes": None, "scale": volume.scale,
                      "units": volume.units}}
    omezarr.create_output(out, volume=volume, block=chunk, class_names=list(classes), quantize=False, meta=meta,
                          levels=levels)
    w = omezarr.Writer(str(out), volume.two_d)
    for b in block_grid(volume.shape, chunk):
        p = probs.reshape(volume.shape)[slice(*b.z), slice(*b.y), slice(*b.x)]
        w.write(b, np.stack([1 - p, p][:len(classes)]), (p > 0.5).astype(np.uint8))
    for lv in range(1, levels):
        for b in level_blocks(volume.shape, chunk, lv):
            w.write(b, *compute_level_block(w, lv, b), level=lv)
    omezarr.set_complete(out)
    return out


def _ids(out, level=0):
    return zarr.open_group(str(out), mode="r")[f"labels/instances/{level}"][...]


@pytest.fixture(scope="module")
def cells():
    return _cells()


def test_objects_crossing_faces_and_corners_are_not_cut_for_any_block_size(cells, tmp_path):
    probs, truth = cells
    results = {}
    for block in [(1, 96, 96), (1, 32, 32), (2, 40, 24)]:
        out = _segmentation(tmp_path / f"b{block[1]}x{block[2]}.ome.zarr", probs, (1, 32, 32))
        res = label_instances(out, block=block, workers=0, progress=False)
        ids = _ids(out)
        for z in range(2):  # every cell's interior carries one id: no cell is cut, at faces or corners
            for c in np.unique(truth[z])[1:]:
                assert np.unique(ids[z][truth[z] == c]).size == 1, (block, z, c)
        assert res.n_objects == np.unique(ids).size - (0 in ids) and ids.dtype == np.uint32
        results[block] = ids
    whole = results[(1, 96, 96)]
    for block in [(1, 32, 32), (2, 40, 24)]:  # the block size changes nothing here (VOI between them: 0 bits)
        split, merge = instance_metrics.voi(results[block], whole)
        assert split + merge == 0.0
    # against the truth (per section objects, not linked): only splits across the two sections
    s = instance_metrics.scores(whole, truth)
    assert s["voi_split"] == pytest.approx(1.0, abs=1e-12) and s["voi_merge"] < 0.02


def test_the_learned_merge_score_is_block_exact_and_the_same_on_any_worker_count(cells, tmp_path):
    from mpfpipe.data.merge_learn import fit_merge_classifier
    probs, truth = cells
    train_p, train_t = _cells(seed=1)  # another cell map to learn from (GALA's epochs on its sections)
    clf = fit_merge_classifier(list(train_p), list(train_t), threshold=0.4, seed_distance=12)
    learned = {"merge_score": "learned", "merge_classifier": clf, "merge_threshold": 0.5}
    results = {}
    for block, workers in [((1, 96, 96), 0), ((1, 32, 32), 0), ((1, 32, 32), 2)]:
        out = _segmentation(tmp_path / f"l{block[1]}w{workers}.ome.zarr", probs, (1, 32, 32))
        label_instances(out, block=block, workers=workers, progress=False, **learned)
        results[block, workers] = _ids(out)
        settings = zarr.open_group(str(out), mode="r")["labels/instances"].attrs["mpfpipe"]["settings"]
        assert settings["merge_classifier"] == clf
    assert np.array_equal(results[(1, 32, 32), 0], results[(1, 32, 32), 2])
    split, merge = instance_metrics.voi(results[(1, 32, 32), 0], results[(1, 96, 96), 0])
    assert split + merge == 0.0
    for z in range(2):  # and it segments the cells (per section: they are not linked)
        assert instance_metrics.scores(results[(1, 96, 96), 0][z], truth[z])["arand"] < 0.005


def test_link_slices_joins_objects_through_sections_and_z_blocks(cells, tmp_path):
    probs, truth = cells
    out = _segmentation(tmp_path / "z.ome.zarr", probs, (1, 32, 32))
    res = label_instances(out, block=(1, 32, 32), link_slices=True, workers=0, progress=False)
    ids = _ids(out)
    for c in np.unique(truth[0])[1:]:  # a cell in both sections (z blocks of one section each) is one id
        assert np.unique(ids[:, truth[0] == c]).size == 1, c
    assert res.n_objects == np.unique(ids[0]).size == np.unique(ids[1]).size
    s = instance_metrics.scores(ids, truth)
    assert s["voi_split"] == 0.0 and s["arand"] < 0.01


def test_same_ids_on_any_worker_count_and_pyramid_and_ome_metadata(cells, tmp_path):
    from ome_zarr_models.v05.image_label import ImageLabel
    probs, _ = cells
    outs = []
    for workers in (0, 2):
        out = _segmentation(tmp_path / f"w{workers}.ome.zarr", probs, (1, 32, 32), levels=3)
        label_instances(out, workers=workers, threads=1, progress=False)
        outs.append(out)
    for lv in range(3):
        assert np.array_equal(_ids(outs[0], lv), _ids(outs[1], lv))
    assert _ids(outs[0], 2).shape == (2, 24, 24)
    g = zarr.open_group(str(outs[1]), mode="r")
    assert g["labels"].attrs["ome"]["labels"] == ["segmentation", "instances"]
    inst = g["labels/instances"]
    assert inst.attrs["mpfpipe"]["complete"] is True and "instances_work" not in g
    label = ImageLabel.from_zarr(inst)  # raises if the NGFF 0.5 label metadata or the arrays do not match
    assert [d.path for d in label.ome_attributes.multiscales[0].datasets] == ["0", "1", "2"]
    il = label.ome_attributes.image_label
    assert il.source.image == "../../" and [(c.label_value, c.rgba) for c in il.colors] == [(0, (0, 0, 0, 0))]
    from ome_zarr_models.v05.labels import Labels
    assert Labels.from_zarr(g["labels"]).ome_attributes.labels == ["segmentation", "instances"]  # dtypes too
    # read as napari-ome-zarr reads it (ome-zarr-py's Reader): the instances are a label node with a pyramid
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label as LabelSpec, Reader
    nodes = list(Reader(parse_url(str(outs[1])))())
    found = [n for n in nodes if any(isinstance(s, LabelSpec) for s in n.specs) and n.zarr.path.rstrip("/")
             .endswith("labels/instances")]
    assert len(found) == 1 and len(found[0].data) == 3
    assert np.array_equal(np.asarray(found[0].data[0]), _ids(outs[1]))
    assert found[0].metadata["color"] == {0: [0.0, 0.0, 0.0, 0.0]}
    from mpfpipe._integrity import crc
    sums = g["checksums_instances_0"][...]
    assert sums[0, 1, 2] == crc(g["labels/instances/0"][0:1, 32:64, 64:96])
    with pytest.raises(OutputExistsError, match="complete labels/instances"):
        label_instances(outs[1], workers=0, progress=False)
    again = label_instances(outs[1], workers=0, progress=False, overwrite=True, merge_threshold=1.0)
    assert again.n_objects == 2  # replaced: every boundary merged, one object per section across all blocks


def test_kill_and_resume_gives_identical_ids(cells, tmp_path):
    probs, _ = cells
    ref = _segmentation(tmp_path / "ref.ome.zarr", probs, (1, 16, 16))
    label_instances(ref, block=(1, 16, 16), workers=0, progress=False)
    out = _segmentation(tmp_path / "killed.ome.zarr", probs, (1, 16, 16))
    code = (f"from mpfpipe.segment.instances import label_instances; "
            f"label_instances({str(out)!r}, block=(1, 16, 16), workers=0, progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    blocks = out / "instances_work" / "blocks"
    try:
        deadline = time.time() + 120
        while (not blocks.exists() or len(list(blocks.glob("*.npz"))) < 10) and proc.poll() is None \
                and time.time() < deadline:
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done = len(list(blocks.glob("*.npz")))
    assert 0 < done < 72, "the run was not killed mid-way"
    res = label_instances(out, block=(1, 16, 16), workers=0, progress=False)
    assert res.skipped >= done - 1 and res.skipped + res.done == 72
    for lv in range(2):
        assert np.array_equal(_ids(out, lv), _ids(ref, lv))


def test_bad_inputs_give_one_clear_error(cells, tmp_path):
    probs, _ = cells
    one = _segmentation(tmp_path / "one.ome.zarr", probs, (1, 48, 48), classes=("cell",))
    with pytest.raises(DataError, match="1 class.*membrane"):
        label_instances(one, workers=0, progress=False)
    two = _segmentation(tmp_path / "two.ome.zarr", probs, (1, 48, 48))
    with pytest.raises(DataError, match="membrane class 3 is not one of the 2 classes of the segmentation"):
        label_instances(two, positive=3, workers=0, progress=False)
    with pytest.raises(OptionError, match=r"threshold = 1.5: expected a finite number in \[0, 1\]"):
        label_instances(two, threshold=1.5, workers=0, progress=False)
    with pytest.raises(OptionError, match="merge_threshold"):
        label_instances(two, merge_threshold=-0.1, workers=0, progress=False)
    with pytest.raises(DataError, match=r"instance block '1,0,32': give Z,Y,X \(or Y,X\) positive block sizes"):
        label_instances(two, block="1,0,32", workers=0, progress=False)
    with pytest.raises(DataError, match="merge_score 'learned' needs a fitted merge classifier"):
        label_instances(two, merge_score="learned", workers=0, progress=False)
    with pytest.raises(OptionError, match="merge_classifier: merge_classifier is not a logistic regression"):
        label_instances(two, merge_score="learned", merge_classifier={"kind": "forest"}, workers=0, progress=False)
    root = zarr.open_group(str(two), mode="r+")
    root.attrs["mpfpipe"] = {**root.attrs["mpfpipe"], "complete": False}
    with pytest.raises(DataError, match="unfinished segmentation"):
        label_instances(two, workers=0, progress=False)


def test_cli_segment_instances_then_evaluate(tmp_path, capsys):
    from mpfpipe.arch import preset
    from mpfpipe.cli import main
    from mpfpipe.model import Model, save_model
    from mpfpipe.params import init_params
    net = preset("n4", maps=3, hidden=6)
    save_model(Model(net, init_params(net, 7), class_names=["cell", "membrane"],
                     normalisation={"mean": [128.0], "std": [50.0]}), tmp_path / "m.safetensors")
    probs, truth = _cells((2, 64, 64))
    zarr.save_array(str(tmp_path / "v.zarr"), (probs * 255).astype(np.uint8))
    args = ["segment", str(tmp_path / "m.safetensors"), str(tmp_path / "v.zarr"), str(tmp_path / "o.ome.zarr"),
            "--block", "1,32,32", "--workers", "0", "--quiet", "--instances", "--instance-min-size", "10",
            "--instance-block", "16x16"]
    with pytest.raises(SystemExit) as exc:
        main(["segment", *args[1:4], "--instances", "--instance-threshold", "1.5"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--instance-threshold" in err and "1.5" in err
    with pytest.raises(SystemExit) as exc:
        main(args)
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "labels/instances" in out and "; 32 blocks:" in out, out  # 2 x 4 x 4
    assert _ids(tmp_path / "o.ome.zarr").shape == (2, 64, 64)
    import tifffile
    tifffile.imwrite(tmp_path / "truth.tif", truth.astype(np.uint32))
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", str(tmp_path / "o.ome.zarr"), str(tmp_path / "truth.tif"), "--instances",
              "-o", str(tmp_path / "ev")])
    assert exc.value.code == 0
    import json
    inst = json.loads((tmp_path / "ev" / "report.json").read_text())["instances"]
    assert 0 <= inst["arand"] <= 1 and inst["voi_split"] >= 0 and 0 <= inst["v_rand_thinned"] <= 1


def test_a_2d_image_gets_2d_instances(cells, tmp_path):
    probs, truth = cells
    out = _segmentation(tmp_path / "flat.ome.zarr", probs[0], (1, 32, 32), levels=2)
    res = label_instances(out, workers=0, progress=False)
    ids = _ids(out)
    assert ids.shape == (96, 96) and _ids(out, 1).shape == (48, 48)
    assert res.n_objects == np.unique(ids).size
    for c in np.unique(truth[0])[1:]:
        assert np.unique(ids[truth[0] == c]).size == 1
    g = zarr.open_group(str(out), mode="r")
    assert [a["name"] for a in g["labels/instances"].attrs["ome"]["multiscales"][0]["axes"]] == ["y", "x"]


def test_damaged_or_missing_instance_chunks_are_found_and_repaired(cells, tmp_path, capsys):
    from mpfpipe.cli import main
    from mpfpipe.segment.verify import damaged_instance_blocks
    probs, truth = cells
    out = _segmentation(tmp_path / "r.ome.zarr", probs, (1, 32, 32))
    n_objects = label_instances(out, workers=0, progress=False).n_objects
    ref = [_ids(out, lv) for lv in range(2)]
    assert damaged_instance_blocks(out) == []
    chunks = out / "labels" / "instances"
    (chunks / "0" / "c" / "1" / "0" / "2").unlink()  # a level-0 chunk lost: it would read as no object
    (chunks / "1" / "c" / "0" / "1" / "0").write_bytes(b"not a chunk")  # a level-1 chunk garbled
    bad = damaged_instance_blocks(out)
    assert [(lv, index) for lv, index, _ in bad] == [(0, (1, 0, 2)), (1, (0, 1, 0))]
    assert "is missing (checksum mismatch)" in bad[0][2] and "cannot be read" in bad[1][2]
    with pytest.raises(SystemExit) as exc:  # evaluate refuses them in one line
        main(["evaluate", str(out), str(tmp_path / "t.npy"), "--instances"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 1 and len(err) == 1 and "2 damaged block(s) of labels/instances" in err[0], err
    with pytest.raises(SystemExit) as exc:
        main(["info", str(out), "--verify"])
    assert exc.value.code == 1 and "damaged chunk" in capsys.readouterr().err
    res = label_instances(out, workers=0, progress=False)  # the same call repairs them: the same ids come back
    assert damaged_instance_blocks(out) == [] and res.n_objects == n_objects
    for lv in range(2):
        assert np.array_equal(_ids(out, lv), ref[lv])
    g = zarr.open_group(str(out), mode="r")
    assert g["labels/instances"].attrs["mpfpipe"]["complete"] is True and "instances_work" not in g
    # only a pyramid chunk damaged: redone from the level below, without the first two passes
    (chunks / "1" / "c" / "1" / "1" / "1").unlink()
    res = label_instances(out, workers=0, progress=False)
    assert (res.done, res.skipped, res.n_objects) == (0, 0, n_objects)
    assert np.array_equal(_ids(out, 1), ref[1]) and damaged_instance_blocks(out) == []


def test_segment_instances_refuses_a_model_without_the_membrane_class_before_segmenting(tmp_path, capsys):
    from mpfpipe.arch import preset
    from mpfpipe.cli import main
    from mpfpipe.model import Model, save_model
    from mpfpipe.params import init_params
    net = preset("n4", maps=3, hidden=6, n_classes=3)
    model = save_model(Model(net, init_params(net, 0), class_names=["bg", "membrane", "mito"]),
                       tmp_path / "m.safetensors")
    zarr.save_array(str(tmp_path / "v.zarr"), np.zeros((1, 40, 40), np.uint8))
    for extra, message in [(["--positive", "5"], f"error: membrane class 5 is not one of the 3 classes of model "
                                                 f"{model} (bg, membrane, mito)"),
                           (["--instance-merge-threshold", "1.2"], "--instance-merge-threshold"),
                           (["--instance-merge-score", "learned"], "error: merge_score 'learned' needs a fitted "
                                                                    "merge classifier")]:
        with pytest.raises(SystemExit) as exc:
            main(["segment", str(model), str(tmp_path / "v.zarr"), str(tmp_path / "o.ome.zarr"), "--instances",
                  "--workers", "0", "--quiet", *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
        assert exc.value.code == (2 if extra[0] == "--instance-merge-threshold" else 1)
        assert not (tmp_path / "o.ome.zarr").exists()  # refused before anything was segmented
