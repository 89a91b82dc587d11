import json

import numpy as np
import pytest

from mpfpipe.arch import preset
from mpfpipe.errors import ModelFileError, OutputExistsError
from mpfpipe.fragment import dense_forward
from mpfpipe.model import Model, load_model, read_metadata, save_model
from mpfpipe.params import init_params


@pytest.fixture
def model():
    net = preset("n3", maps=4, hidden=6, n_classes=3)
    return Model(net, init_params(net, 3), class_names=["bg", "membrane", "mito"],
                 normalisation={"mean": [120.0], "std": [40.0]}, provenance={"training": {"steps": 7}})


def test_round_trip_rebuilds_the_exact_forward_pass(tmp_path, model):
    path = save_model(model, tmp_path / "m.safetensors")
    back = load_model(path)
    assert back.net == model.net and back.class_names == model.class_names
    assert back.normalisation == model.normalisation and back.provenance["training"] == {"steps": 7}
    img = np.random.default_rng(0).standard_normal((1, 30, 29))
    assert np.array_equal(dense_forward(back.net, back.params, img), dense_forward(model.net, model.params, img))


def test_torch_layout_and_metadata_describe_every_tensor(tmp_path, model):
    from safetensors.numpy import load_file
    path = save_model(model, tmp_path / "m.safetensors")
    tensors = load_file(str(path))
    e = model.net.fc_extent
    assert tensors["conv1.weight"].shape == (4, 1, 3, 3)
    assert tensors["fc1.weight"].shape == (6, 4 * e * e)
    meta = read_metadata(path)
    layers = meta["architecture"]["layers"]
    assert layers[0]["weight"] == "conv1.weight" and layers[-1]["bias"] == "fc2.bias"
    assert meta["padding"] == "symmetric" and meta["architecture"]["window"] == 65
    assert "mpfpipe_version" in meta["provenance"]


def test_3d_model_round_trip_in_conv3d_layout(tmp_path):
    from safetensors.numpy import load_file
    net = preset("aniso", maps=3, hidden=5)
    model = Model(net, init_params(net, 1))
    path = save_model(model, tmp_path / "v.safetensors")
    tensors = load_file(str(path))
    assert tensors["conv4.weight"].shape == (3, 3, 4, 4, 4)  # PyTorch Conv3d: (out, in, kz, ky, kx)
    assert tensors["fc1.weight"].shape == (5, 3 * 1 * 1 * 1)
    meta = read_metadata(path)["architecture"]
    assert meta["window"] == [15, 105, 105] and meta["stride"] == [2, 4, 4] and meta["fc_extent"] == [1, 1, 1]
    back = load_model(path)
    assert back.net == net and all(np.array_equal(back.params[k], v) for k, v in model.params.items())


def test_info_shows_the_3d_window(tmp_path, capsys):
    from mpfpipe.cli import main
    net = preset("aniso", maps=3, hidden=5)
    path = save_model(Model(net, init_params(net, 1)), tmp_path / "v.safetensors")
    with pytest.raises(SystemExit) as exc:
        main(["info", str(path)])
    out = capsys.readouterr().out
    assert exc.value.code in (0, None)
    assert "window        15x105x105, stride 2x4x4," in out and "conv(4x4x4, 3, tanh)" in out

def test_no_overwrite_without_flag(tmp_path, model):
    save_model(model, tmp_path / "m.safetensors")
    with pytest.raises(OutputExistsError):
        save_model(model, tmp_path / "m.safetensors")
    other = Model(model.net, model.params, class_names=["x", "y", "z"], normalisation=model.normalisation)
    save_model(other, tmp_path / "m.safetensors", overwrite=True)
    assert load_model(tmp_path / "m.safetensors").class_names == ["x", "y", "z"]  # really replaced


def test_truncated_file_is_rejected(tmp_path, model):
    path = save_model(model, tmp_path / "m.safetensors")
    data = path.read_bytes()
    for cut in (len(data) - 10, 100, 4):
        (tmp_path / "t.safetensors").write_bytes(data[:cut])
        with pytest.raises(ModelFileError, match="truncated|corrupt"):
            load_model(tmp_path / "t.safetensors")


def test_tampered_tensor_or_metadata_is_rejected(tmp_path, model):
    from safetensors.numpy import load_file, save_file
    path = save_model(model, tmp_path / "m.safetensors")
    tensors = load_file(str(path))
    meta = read_metadata(path)
    tensors["conv1.weight"][0, 0, 0, 0] += 1.0
    save_file(tensors, str(tmp_path / "x.safetensors"), metadata={"mpfpipe": json.dumps(meta)})
    with pytest.raises(ModelFileError, match="checksum"):
        load_model(tmp_path / "x.safetensors")
    save_file(tensors, str(tmp_path / "y.safetensors"))
    with pytest.raises(ModelFileError, match="not an mpfpipe model"):
        load_model(tmp_path / "y.safetensors")
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "nope.safetensors")


def _rewrite(src, dst, edit_meta=None, edit_tensors=None):
    from safetensors.numpy import load_file, save_file
    tensors = load_file(str(src))
    meta = read_metadata(src)
    if edit_meta:
        edit_meta(meta)
    if edit_tensors:
        edit_tensors(tensors)
    save_file(tensors, str(dst), metadata={"mpfpipe": json.dumps(meta)})
    return dst


def test_checksum_covers_the_metadata(tmp_path, model):
    path = save_model(model, tmp_path / "m.safetensors")
    assert read_metadata(path)["format_version"] == 2
    edits = [lambda m: m["normalisation"].update(std=[0.0]), lambda m: m["normalisation"].update(mean=[0.0]),
             lambda m: m.update(class_names=["a", "b", "c"]), lambda m: m["provenance"].update(note="edited")]
    for n, edit in enumerate(edits):
        bad = _rewrite(path, tmp_path / f"e{n}.safetensors", edit_meta=edit)
        with pytest.raises(ModelFileError, match="checksum mismatch"):
            load_model(bad)


def test_format_1_files_still_load_and_std_0_is_refused_anyway(tmp_path, model):
    from mpfpipe.model import _digest
    from safetensors.numpy import load_file
    path = save_model(model, tmp_path / "m.safetensors")
    tensors = load_file(str(path))

    def as_v1(m, std=40.0):
        m.update(format_version=1, sha256=_digest(tensors))
        m["normalisation"]["std"] = [std]
    old = _rewrite(path, tmp_path / "v1.safetensors", edit_meta=as_v1)
    assert load_model(old).normalisation == {"mean": [120.0], "std": [40.0]}
    zero = _rewrite(path, tmp_path / "v1z.safetensors", edit_meta=lambda m: as_v1(m, 0.0))
    with pytest.raises(ModelFileError, match="std > 0"):
        load_model(zero)
    with pytest.raises(ModelFileError, match="std > 0"):
        Model(model.net, model.params, normalisation={"mean": [1.0], "std": [float("nan")]})
    with pytest.raises(ModelFileError, match="not distinct"):
        Model(model.net, model.params, class_names=["a", "a", "b"])


def test_info_reports_a_flipped_tensor_byte(tmp_path, model, capsys):
    from mpfpipe.cli import main
    path = save_model(model, tmp_path / "m.safetensors")
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10  # inside the last tensor's bytes
    bad = tmp_path / "flipped.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(SystemExit) as exc:
        main(["info", str(bad)])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 1 and err.splitlines() == [f"error: {bad}: checksum mismatch: the file was modified "
                                                        "or damaged"]
    with pytest.raises(SystemExit) as exc:
        main(["info", str(path)])
    assert exc.value.code == 0 and "sha256" in capsys.readouterr().out


def test_downsample_and_detection_rule_travel_with_the_model(tmp_path, model):
    import dataclasses

    from mpfpipe.model import _digest, set_detection
    from safetensors.numpy import load_file
    path = save_model(dataclasses.replace(model, downsample=4), tmp_path / "m.safetensors")
    assert read_metadata(path)["downsample"] == 4 and "detection" not in read_metadata(path)
    assert load_model(path).downsample == 4 and load_model(path).detection is None
    set_detection(path, {"threshold": 17, "positive": 2, "chosen_on": "val"})
    m = load_model(path)
    assert m.detection == {"threshold": 17.0, "positive": 2, "chosen_on": "val"} and m.downsample == 4
    assert np.array_equal(m.params["conv1.weight"], model.params["conv1.weight"].astype(np.float32))
    with pytest.raises(ModelFileError, match="detection rule"):
        set_detection(path, {"threshold": -1})
    with pytest.raises(ModelFileError, match="detection rule"):
        set_detection(path, {"threshold": 3, "positive": 3})  # a 3-class net has no class 3
    with pytest.raises(ModelFileError, match="downsample"):
        dataclasses.replace(model, downsample=0)
    # a model file written before these fields existed (format 2 without them) loads at full resolution
    tensors = load_file(str(path))

    def older(meta):
        meta.pop("downsample")
        meta.pop("detection")
        meta["sha256"] = _digest(tensors, meta)
    old = _rewrite(path, tmp_path / "old.safetensors", edit_meta=older)
    assert "downsample" not in read_metadata(old)
    assert load_model(old).downsample == 1 and load_model(old).detection is None


def test_instance_parameters_travel_with_the_model_and_keep_its_identity(tmp_path, model):
    from mpfpipe.model import _digest, model_record, same_model, set_detection, set_instances
    from safetensors.numpy import load_file
    path = save_model(model, tmp_path / "m.safetensors")
    record = model_record(path)  # what a segmentation output keeps of the model that made it
    assert load_model(path).instances is None
    set_instances(path, {"merge_threshold": 0.3, "seed_distance": 8, "chosen_on": "val"})
    set_detection(path, {"threshold": 5})  # a later rewrite keeps the instance parameters
    m = load_model(path)  # verified: the digest covers the new metadata
    assert m.instances == {"merge_threshold": 0.3, "seed_distance": 8, "chosen_on": "val"}
    meta = read_metadata(path)
    assert meta["instances"] == m.instances and meta["sha256"] == _digest(load_file(str(path)), meta)
    assert meta["sha256"] != record["sha256"] and same_model(record, path)
    # the same net saved at another time, or a model of other classes, is another model
    assert not same_model({**record, "provenance": {**record["provenance"], "saved": "2000-01-01T00:00:00+00:00"}},
                          path)
    assert not same_model({**record, "class_names": ["a", "b", "c"]}, path)
    with pytest.raises(ModelFileError, match=r"instance parameters: merge_threshold = 1.5: expected a finite "
                                             r"number in \[0, 1\]"):
        set_instances(path, {"merge_threshold": 1.5})
    with pytest.raises(ModelFileError, match="seed_distance"):
        set_instances(path, {"seed_distance": 0})
    assert load_model(path).instances["merge_threshold"] == 0.3  # a refused write leaves the file as it was


def test_a_learned_merge_score_travels_with_the_model(tmp_path, model):
    from mpfpipe.data.agglomerate import FEATURES
    from mpfpipe.model import set_instances
    path = save_model(model, tmp_path / "m.safetensors")
    n = len(FEATURES)
    clf = {"kind": "logistic", "features": list(FEATURES), "centre": [0.5] * n, "scale": [0.25] * n,
           "coef": [0.1 * k for k in range(n)], "bias": -1.5, "samples": 10, "different": 4}
    set_instances(path, {"merge_score": "learned", "merge_threshold": 0.6, "merge_classifier": clf})
    m = load_model(path)  # verified: the digest covers the classifier's numbers
    assert m.instances["merge_classifier"] == clf and m.instances["merge_score"] == "learned"
    assert read_metadata(path)["instances"]["merge_classifier"] == clf
    with pytest.raises(ModelFileError, match="instance parameters: merge_classifier: merge_classifier is not a "
                                             "logistic regression"):
        set_instances(path, {"merge_score": "learned", "merge_classifier": {**clf, "coef": [1.0]}})
    assert load_model(path).instances["merge_classifier"] == clf


def test_model_file_keeps_the_context_and_refuses_a_bad_one(tmp_path):
    net = preset("n3", in_channels=5, maps=2, hidden=3)
    norm = {"mean": [0.0] * 5, "std": [1.0] * 5}
    path = save_model(Model(net, init_params(net, 0), normalisation=norm, section_context=2), tmp_path / "m.st")
    assert load_model(path).section_context == 2 and read_metadata(path)["section_context"] == 2
    plain = save_model(Model(net, init_params(net, 0), normalisation=norm), tmp_path / "p.st")
    assert "section_context" not in read_metadata(plain) and load_model(plain).section_context == 0
    with pytest.raises(ModelFileError, match="multiple of 2 \\* 1 \\+ 1"):
        Model(net, init_params(net, 0), normalisation=norm, section_context=1)  # 5 maps are not 3 sections
    with pytest.raises(ModelFileError, match="section context 9"):
        Model(net, init_params(net, 0), normalisation=norm, section_context=9)
