import json
import re

import pytest

from mpfpipe.arch import FC, Conv, Net, Pool, load_net, preset
from mpfpipe.errors import ArchitectureError


@pytest.mark.parametrize("name,window,stride", [("n4", 95, 16), ("n3", 65, 12), ("steel", 34, 4)])
def test_presets_are_exact_with_documented_windows(name, window, stride):
    net = preset(name)
    assert (net.window, net.stride, net.n_classes) == (window, stride, 2)


def test_n4_fc_sees_3x3x48():
    net = preset("n4")
    assert net.fc_extent == 3
    fc1 = [op for op in net.ops if getattr(op, "name", "") == "fc1"][0]
    assert (fc1.k, fc1.cin, fc1.cout) == (3, 48, 200)


def test_paper_steel_window_31_is_rejected_with_layer_and_suggestion():
    layers = preset("steel").layers
    with pytest.raises(ArchitectureError) as err:
        Net(layers, window=31)
    msg = str(err.value)
    assert "layer 2 (pool(2))" in msg and "25x25" in msg and "34" in msg


def test_window_is_derived_when_omitted():
    net = Net((Conv(3, 4), Pool(2), Conv(2, 4), FC(2, "linear")))
    assert net.window == 6 and net.fc_extent == 1  # 1 -> conv 2 -> 2 -> pool -> 4 -> conv 3 -> 6


@pytest.mark.parametrize("layers,fragment", [
    ((Conv(3, 4), FC(2, "tanh")), "must be linear"),
    ((Conv(3, 4), Pool(2)), "last layer must be an fc"),
    ((FC(3), Conv(3, 4), FC(2, "linear")), "conv layers must come before"),
    ((Conv(3, 4, "sigmoid"), FC(2, "linear")), "unknown activation"),
    ((Conv(3, 4), Pool(1), FC(2, "linear")), "pool size"),
])
def test_invalid_nets_are_rejected(layers, fragment):
    with pytest.raises(ArchitectureError, match=fragment):
        Net(layers)


def test_yaml_and_json_files_round_trip(tmp_path):
    net = preset("n3", in_channels=2, n_classes=3)
    (tmp_path / "net.json").write_text(json.dumps(net.to_dict()))
    assert load_net(tmp_path / "net.json") == net
    (tmp_path / "net.yaml").write_text(
        "name: tiny\nin_channels: 1\nlayers:\n  - {type: conv, k: 5, maps: 8, act: relu}\n"
        "  - {type: pool, p: 2}\n  - {type: fc, n: 16}\n  - {type: fc, n: 2}\n")
    tiny = load_net(tmp_path / "net.yaml")
    assert tiny.window == 6 and tiny.layers[-1].act == "linear" and tiny.name == "tiny"
    assert load_net("steel", in_channels=3, n_classes=4).in_channels == 3


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(ArchitectureError, match="not a preset"):
        load_net(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("layers: [ {type: conv, k: 3}")
    with pytest.raises(ArchitectureError, match="cannot parse"):
        load_net(tmp_path / "bad.yaml")
    (tmp_path / "bad2.yaml").write_text("layers:\n  - {type: conv, k: 3}\n")
    with pytest.raises(ArchitectureError, match="layer 1: malformed"):
        load_net(tmp_path / "bad2.yaml")


@pytest.mark.parametrize("desc,needle", [
    ({"layers": 5}, "needs a 'layers' list"),
    ({"layers": [5]}, "layer 1: 5 is not a mapping"),
    ({"window": 34, "layers": [{"type": "conv", "k": 7.5, "maps": 2}, {"type": "fc", "n": 2}]},
     "layer 1: k = 7.5 must be an integer"),
    ({"window": 34, "layers": [{"type": "conv", "k": 7, "maps": "8"}, {"type": "fc", "n": 2}]},
     "layer 1: maps = '8' must be an integer"),
    ({"window": 34.5, "layers": [{"type": "fc", "n": 2}]}, "window = 34.5 must be an integer"),
])
def test_network_files_with_non_integers_are_refused(desc, needle):
    from mpfpipe.arch import net_from_dict
    with pytest.raises(ArchitectureError, match=re.escape(needle)):
        net_from_dict(desc)
