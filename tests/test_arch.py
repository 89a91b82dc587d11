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


# -- 3D nets (issue 26) -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,window,stride,extent", [
    ("n337", (86, 86, 86), (8, 8, 8), (3, 3, 3)),  # ZNNi networks/337.znni: its 86^3 field of view
    ("aniso", (15, 105, 105), (2, 4, 4), (1, 1, 1)),  # ELEKTRONN2 neuro3d
])
def test_3d_presets_windows_strides_and_halos(name, window, stride, extent):
    net = preset(name)
    assert (net.ndim, net.window, net.window3, net.stride, net.stride3, net.fc_extent) == \
        (3, window, window, stride, stride, extent)
    assert net.halo3 == tuple(((w - 1) // 2, w - 1 - (w - 1) // 2) for w in window)


def test_n337_has_the_znni_layers():
    net = preset("n337")
    convs = [layer for layer in net.layers if isinstance(layer, Conv)]
    assert [c.k for c in convs] == [(3, 3, 3)] * 6 and {c.maps for c in convs} == {80}
    assert net.pools3 == ((2, 2, 2),) * 3
    fc1 = net.ops[-1]  # ZNNi's 7th conv: 3x3x3 over 80 maps, as our fc layer over a 3^3 extent
    assert (fc1.name, fc1.kz, fc1.k, fc1.cin) == ("fc1", 3, 3, 80)


def test_aniso_has_the_neuro3d_layers():
    net = preset("aniso")
    convs = [(layer.k, layer.maps) for layer in net.layers if isinstance(layer, Conv)]
    assert convs == [((1, 6, 6), 20), ((1, 5, 5), 30), ((1, 5, 5), 40), ((4, 4, 4), 80), ((3, 4, 4), 100),
                     ((3, 4, 4), 100), ((2, 4, 4), 150), ((1, 4, 4), 200), ((1, 4, 4), 200)]
    assert net.pools3 == ((1, 2, 2), (1, 2, 2), (2, 1, 1))
    assert [(op.name, op.kz, op.k, op.cout) for op in net.ops[-2:]] == [("fc1", 1, 1, 200), ("fc2", 1, 1, 2)]


def test_2d_nets_keep_their_geometry_and_read_as_z_1():
    net = preset("n4")
    assert (net.ndim, net.window, net.stride, net.halo) == (2, 95, 16, (47, 47))
    assert (net.window3, net.stride3, net.halo3) == ((1, 95, 95), (1, 16, 16), ((0, 0), (47, 47), (47, 47)))
    assert all(getattr(op, "kz", 1) == 1 and getattr(op, "pz", 1) == 1 for op in net.ops)


def test_3d_window_derived_per_axis():
    # z: 1 -> conv 2 -> 2 -> pool 2 -> 4 -> conv 1 -> 4; y, x: 1 -> 3 -> pool 1 -> 3 -> conv 3 -> 5
    net = Net((Conv((1, 3, 3), 4), Pool((2, 1, 1)), Conv((2, 3, 3), 4), FC(2, "linear")))
    assert net.window == (4, 5, 5) and net.stride == (2, 1, 1) and net.fc_extent == (1, 1, 1)
    mixed = Net((Conv(3, 4), Pool((2, 2, 2)), FC(2, "linear")))  # a bare integer is (1, k, k) in a 3D net
    assert mixed.window == (2, 4, 4) and mixed.layers[0].k3 == (1, 3, 3)


@pytest.mark.parametrize("window,needle", [
    ((14, 105, 105), "not exact in z: layer 7 (pool(2x1x1)) gets a map 11 wide in z"),
    ((15, 104, 104), "not exact in y"),
    ((15, 105, 101), "y and x must be equal"),
    ((1, 105, 105), "too small in z"),
])
def test_3d_windows_that_are_not_exact_name_the_axis(window, needle):
    with pytest.raises(ArchitectureError) as err:
        Net(preset("aniso").layers, window=window)
    assert needle in str(err.value)


@pytest.mark.parametrize("spec,needle", [
    ({"type": "conv", "k": [3, 3, 2], "maps": 4}, "y and x sizes must be equal"),
    ({"type": "conv", "k": [3, 3], "maps": 4}, "must be an integer or [z, y, x]"),
    ({"type": "conv", "k": [0, 3, 3], "maps": 4}, "sizes must be >= 1"),
    ({"type": "pool", "p": [1, 1, 1]}, "1x1x1 pool does nothing"),
    ({"type": "pool", "p": [2, 2.5, 2]}, "must be an integer"),
])
def test_bad_3d_layers_are_refused(spec, needle):
    with pytest.raises(ArchitectureError) as err:
        load_net({"layers": [spec, {"type": "fc", "n": 2}]})
    assert needle in str(err.value)


def test_3d_network_files_round_trip(tmp_path):
    net = preset("aniso", maps=4, hidden=6)
    d = net.to_dict()
    assert d["window"] == [15, 105, 105] and d["layers"][0]["k"] == [1, 6, 6] and d["layers"][6]["p"] == [2, 1, 1]
    (tmp_path / "net.json").write_text(json.dumps(d))
    assert load_net(tmp_path / "net.json") == net
    (tmp_path / "net.yaml").write_text("layers:\n  - {type: conv, k: [3, 3, 3], maps: 8}\n"
                                       "  - {type: pool, p: [1, 2, 2]}\n  - {type: fc, n: 2}\n")
    vol = load_net(tmp_path / "net.yaml")
    assert vol.window == (3, 4, 4) and vol.describe().startswith("net: 3x4x4 window, stride 1x2x2")
