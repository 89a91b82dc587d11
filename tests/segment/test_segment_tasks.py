"""Worker tasks (mpfpipe.segment.tasks): level-0 blocks a few per task, read ahead and written behind in a helper
thread; a failing block is reported alone, the others of its task land with their done markers."""
import numpy as np
import pytest
import zarr

from mpfpipe.arch import preset
from mpfpipe.data import synth_em
from mpfpipe.errors import DataError
from mpfpipe.model import Model, load_model, save_model
from mpfpipe.params import init_params
from mpfpipe.segment import SegmentError, omezarr, read_done, segment
from mpfpipe.segment.blocks import Engine, block_grid, compute_block
from mpfpipe.segment.tasks import blocks_task, group_blocks, group_units
from mpfpipe.data.volume import open_volume


def test_group_blocks_makes_consecutive_runs_of_about_four_per_slot():
    blocks = list(range(100))
    assert [len(g) for g in group_blocks(blocks, 1)] == [8] * 12 + [4]  # capped at MAX_GROUP
    assert [len(g) for g in group_blocks(blocks, 2)] == [8] * 12 + [4]
    assert [len(g) for g in group_blocks(blocks, 4)] == [6] * 16 + [4]  # 100 // 16 = 6
    assert [len(g) for g in group_blocks(blocks[:10], 2)] == [1] * 10
    assert [len(g) for g in group_blocks(blocks[:10], 1)] == [2] * 5
    assert [b for g in group_blocks(blocks, 3) for b in g] == blocks  # every block once, in order
    assert group_blocks([], 2) == []


def test_group_units_keeps_every_unit_in_one_task():
    units = [[1, 2, 3, 4], [5], [6, 7], [8, 9, 10, 11]] * 6
    groups = group_units(units, 1)  # 66 blocks, 1 slot: 8 per task at most (MAX_GROUP)
    assert [b for g in groups for b in g] == [b for u in units for b in u]
    assert [len(g) for g in groups][:4] == [7, 8, 7, 7]  # 4+1+2 | 4+4 | 1+2+4 | 4+1+2: no unit is split
    starts = {u[0] for u in units}
    assert all(g[0] in starts for g in groups)  # a task begins where a unit begins


def test_level1_units_are_the_source_sets_of_level1_blocks():
    from mpfpipe.segment.blocks import block_grid
    from mpfpipe.segment.pyramid import level1_units, level_blocks
    shape, chunk = (2, 40, 30), (1, 16, 16)
    todo0 = [b for b in block_grid(shape, chunk) if b.index != (1, 0, 0)]  # one level-0 block is done already
    units, inline = level1_units(shape, chunk, todo0, level_blocks(shape, chunk, 1))
    assert sorted(inline) == [(0, 0, 0), (0, 1, 0), (1, 1, 0)]  # level 1 is 20 x 15: blocks of 16 x 16, 2 x 1
    assert [[b.index for b in u] for u in units if len(u) > 1] == [
        [(0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1)], [(0, 2, 0), (0, 2, 1)], [(1, 2, 0), (1, 2, 1)]]
    assert sorted(b.index for u in units for b in u) == sorted(b.index for b in todo0)
    assert level1_units(shape, (1, 15, 16), todo0, level_blocks(shape, (1, 15, 16), 1))[1] == {}  # odd chunk


@pytest.fixture
def job(tmp_path):
    data = synth_em(tmp_path / "d.zarr", n_images=3, size=(48, 40))
    net = preset("steel", maps=2, hidden=4)
    save_model(Model(net, init_params(net, 1), normalisation={"mean": [128.0], "std": [50.0]}),
               tmp_path / "m.safetensors")
    return tmp_path, data


def test_a_failing_block_is_reported_alone_and_its_task_goes_on(job):
    tmp, data = job
    ref = tmp / "ref.ome.zarr"
    segment(tmp / "m.safetensors", data, ref, workers=0, progress=False, levels=1)
    (data / "images" / "c" / "1" / "0" / "0" / "0").unlink()  # image 1 (block (1, 0, 0)) cannot be read
    out = tmp / "s.ome.zarr"
    with pytest.raises(SegmentError, match="1 of 3 blocks failed"):
        segment(tmp / "m.safetensors", data, out, workers=0, progress=False, levels=1)
    # now the three blocks in one task, as a worker runs them: only the unreadable one fails
    zarr.open_array(str(out), path=omezarr.done_name(0), mode="r+")[...] = 0
    mdl = load_model(tmp / "m.safetensors")
    vol = open_volume(data)
    blocks = block_grid(vol.shape, (1, *vol.shape[1:]))
    res = blocks_task(Engine(mdl.net, mdl.params, mdl.normalisation), vol, str(out.absolute()),
                      omezarr.output_state(out)["token"], blocks)
    assert [r["index"] for r in res] == [(0, 0, 0), (1, 0, 0), (2, 0, 0)]
    assert "error" not in res[0] and "error" not in res[2]
    assert isinstance(res[1]["error"], DataError) and "image 1" in str(res[1]["error"])
    assert read_done(out).ravel().tolist() == [1, 0, 1]
    a, b = zarr.open_group(str(out), mode="r"), zarr.open_group(str(ref), mode="r")
    for z in (0, 2):  # the blocks around the failed one equal an undisturbed run's, bit for bit
        assert np.array_equal(a["0"][:, z], b["0"][:, z])
        assert np.array_equal(a["labels/segmentation/0"][z], b["labels/segmentation/0"][z])
        probs, _ = compute_block(Engine(mdl.net, mdl.params, mdl.normalisation), vol.read, blocks[z],
                                 vol.slice_size)
        assert np.array_equal(a["0"][:, z:z + 1], probs)
