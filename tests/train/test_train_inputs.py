"""A training run's inputs, checked before they can give a silent wrong result:

- a validation split whose only labels are the ignore label has no loss: refused, not reported as 0.0 (which made
  the first step's model the "best" one);
- ``--resume`` after the dataset was re-ingested at the same path is refused (the dataset's fingerprint is in the
  checkpoint), instead of mixing the old weights with the new data.
"""
from __future__ import annotations

import numpy as np
import pytest

from mpfpipe.cli import main
from mpfpipe.data import ingest, open_dataset, synth_em
from mpfpipe.errors import TrainingError
from mpfpipe.train import train
from mpfpipe.train.settings import dataset_fingerprint


def _cli(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    return exc.value.code, capsys.readouterr().err


def _half_ignored(tmp_path):
    """A dataset of two images in two splits, one of them all ignore: (path, labelled split, ignored split)."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (2, 40, 40), dtype=np.uint8)
    lab = (img > 127).astype(np.uint8)
    lab[1] = 9  # image 1: every pixel mapped to ignore
    np.save(tmp_path / "img.npy", img)
    np.save(tmp_path / "lab.npy", lab)
    ds_path = ingest([tmp_path / "img.npy", tmp_path / "lab.npy"], tmp_path / "d.zarr",
                     label_map={0: 0, 1: 1, 9: "ignore"}, split=(0.5, 0.5), progress=False)
    ds = open_dataset(ds_path)
    labelled, ignored = ("train", "val") if ds.split("val") == [1] else ("val", "train")
    assert ds.class_counts(ds.split(ignored)).sum() == 0 and ds.class_counts(ds.split(labelled)).sum() == 1600
    return ds_path, labelled, ignored


@pytest.mark.parametrize("role", ["validation", "training"])
def test_all_ignore_split_is_refused(capsys, tmp_path, role):
    ds_path, labelled, ignored = _half_ignored(tmp_path)
    splits = ["--train-split", labelled, "--val-split", ignored] if role == "validation" else \
        ["--train-split", ignored, "--val-split", ""]
    out = tmp_path / "m.safetensors"
    code, err = _cli(capsys, "train", ds_path, "--net", "steel", "--maps", "2", "--hidden", "4", "--out", out,
                     *splits, "--no-progress")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err
    assert lines[0].startswith(f"error: {role} split {ignored!r}") and "no labelled pixel" in lines[0]
    assert not out.exists() and not (tmp_path / "m.ckpt.npz").exists()


def test_fingerprint_follows_the_data_not_the_path(tmp_path):
    a = synth_em(tmp_path / "d.zarr", n_images=2, size=(40, 40), seed=0)
    fp = dataset_fingerprint(open_dataset(a))
    assert dataset_fingerprint(open_dataset(synth_em(tmp_path / "d.zarr", n_images=2, size=(40, 40), seed=0,
                                                     overwrite=True))) == fp  # same data again: same inputs
    assert dataset_fingerprint(open_dataset(synth_em(tmp_path / "d.zarr", n_images=2, size=(40, 40), seed=1,
                                                     overwrite=True))) != fp


def test_resume_against_a_reingested_dataset_is_refused(cluster2, tmp_path):
    from mpfpipe.arch import preset

    data = synth_em(tmp_path / "d.zarr", n_images=2, size=(40, 40), seed=0)
    net = preset("steel", maps=2, hidden=4)
    common = dict(out=tmp_path / "m.safetensors", optimizer="gd", epochs=3, client=cluster2.client, progress=False)
    part = train(data, net, max_steps=1, **common)
    assert part.status == "paused"
    synth_em(tmp_path / "d.zarr", n_images=2, size=(40, 40), seed=1, overwrite=True)  # re-ingested, other images
    with pytest.raises(TrainingError, match=r"cannot resume .*the dataset .* changed since that run started"):
        train(data, net, resume=True, **common)
    synth_em(tmp_path / "d.zarr", n_images=2, size=(40, 40), seed=0, overwrite=True)  # the original data again
    assert train(data, net, resume=True, **common).status == "finished"

