"""Section context (2.5-D): the neighbour rule by hand, ingest --section-context's stored maps, and its bad inputs."""
import numpy as np
import pytest
import tifffile

from mpfpipe.cli import main
from mpfpipe.data import ingest, open_dataset
from mpfpipe.data.context import centre_channel, channel_names, section_indices, stack_sections
from mpfpipe.errors import DataError, OptionError


def test_section_indices_by_hand():
    assert section_indices(0, 1, 5) == [0, 0, 1]          # the edge section is repeated (numpy "symmetric")
    assert section_indices(2, 1, 5) == [1, 2, 3]
    assert section_indices(4, 1, 5) == [3, 4, 4]
    assert section_indices(0, 2, 3) == [1, 0, 0, 1, 2]
    assert section_indices(2, 2, 3) == [0, 1, 2, 2, 1]
    assert section_indices(0, 2, 1) == [0, 0, 0, 0, 0]    # one section: itself all round
    assert section_indices(1, 3, 2) == [1, 0, 0, 1, 1, 0, 0]  # k > n: the mirror repeats
    assert section_indices(3, 0, 5) == [3]


@pytest.mark.parametrize("n", [1, 2, 3, 7])
@pytest.mark.parametrize("k", [1, 2, 4])
def test_section_indices_are_numpy_symmetric_padding(n, k):
    padded = np.pad(np.arange(n), k, mode="symmetric")
    for z in range(n):
        assert section_indices(z, k, n) == padded[z:z + 2 * k + 1].tolist()


def test_section_outside_the_stack_is_refused():
    with pytest.raises(DataError, match="section 5 is outside a stack of 5"):
        section_indices(5, 1, 5)


def test_stack_sections_reads_each_section_once_and_stacks_section_major():
    vol = np.arange(6 * 2 * 3 * 4).reshape(6, 2, 3, 4)  # (z, C = 2, y, x)
    reads = []

    def read(a, b):
        reads.append((a, b))
        return vol[a:b]

    out = stack_sections(read, 0, 2, 1, 6)
    assert reads == [(0, 3)] and out.shape == (2, 6, 3, 4)
    assert np.array_equal(out[0], np.concatenate([vol[0], vol[0], vol[1]]))
    assert np.array_equal(out[1], np.concatenate([vol[0], vol[1], vol[2]]))
    assert np.array_equal(stack_sections(read, 4, 6, 0, 6), vol[4:6])


def test_names_and_centre_channel():
    assert channel_names(1, 1) == ["z_minus_1", "z", "z_plus_1"]
    assert channel_names(1, 2) == ["z_minus_1_c0", "z_minus_1_c1", "z_c0", "z_c1", "z_plus_1_c0", "z_plus_1_c1"]
    assert channel_names(2, 1) == ["z_minus_2", "z_minus_1", "z", "z_plus_1", "z_plus_2"]
    assert all(n.isidentifier() for n in channel_names(8, 3))
    assert centre_channel({"section_context": {"sections": 2, "channels": 3}}) == 6
    assert centre_channel({}) == 0 and centre_channel(None) == 0


@pytest.fixture
def stack(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (5, 12, 10)).astype(np.uint8)
    labels = (rng.random((5, 12, 10)) < 0.3).astype(np.uint8) * 255
    tifffile.imwrite(tmp_path / "im.tif", images, photometric="minisblack")
    tifffile.imwrite(tmp_path / "lab.tif", labels, photometric="minisblack")
    return tmp_path / "im.tif", tmp_path / "lab.tif", images, labels


@pytest.mark.parametrize("k", [1, 2])
def test_ingest_stores_each_section_with_its_neighbours(stack, tmp_path, k):
    im, lab, images, labels = stack
    ds = open_dataset(ingest([im, lab], tmp_path / "ctx.zarr", positive=255, section_context=k, split=[0.6, 0.4]))
    plain = open_dataset(ingest([im, lab], tmp_path / "plain.zarr", positive=255, split=[0.6, 0.4]))
    assert ds.channels == 2 * k + 1 and plain.channels == 1
    assert ds.attrs["section_context"] == {"sections": k, "channels": 1}
    assert ds.attrs["provenance"]["options"]["section_context"] == k
    padded = np.pad(images, ((k, k), (0, 0), (0, 0)), mode="symmetric")
    for z in range(5):
        assert np.array_equal(ds.raw_image(z), padded[z:z + 2 * k + 1])
        assert np.array_equal(ds.raw_image(z)[centre_channel(ds.attrs)], images[z])
        assert np.array_equal(ds.raw_labels(z), plain.raw_labels(z))  # the labels are the section's own
    assert ds.attrs["splits"] == plain.attrs["splits"]
    # every channel is a section of the same stack: the normalisation of each is the stack's up to the mirror
    assert np.allclose(ds.normalisation["mean"][k], plain.normalisation["mean"][0])


def test_ingest_context_bad_inputs(stack, tmp_path):
    im, lab, images, _ = stack
    with pytest.raises(DataError, match="--volume dataset is for 3D nets"):
        ingest([im, lab], tmp_path / "a.zarr", positive=255, section_context=1, volume=True)
    folder = tmp_path / "imgs"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    from PIL import Image
    for i in range(2):
        Image.fromarray(images[i]).save(folder / "images" / f"{i}.png")
        Image.fromarray(np.zeros((12, 10), np.uint8)).save(folder / "masks" / f"{i}.png")
    with pytest.raises(DataError, match="needs a stack"):
        ingest([folder], tmp_path / "b.zarr", section_context=1)
    with pytest.raises(OptionError, match="section_context"):
        ingest([im, lab], tmp_path / "c.zarr", positive=255, section_context=9)
    assert not any((tmp_path / n).exists() for n in ("a.zarr", "b.zarr", "c.zarr"))


def test_cli_context_errors_are_one_line(stack, tmp_path, capsys):
    im, lab, _, _ = stack
    with pytest.raises(SystemExit) as exc:
        main(["ingest", str(im), str(lab), str(tmp_path / "o.zarr"), "--positive", "255", "--section-context", "1",
              "--volume"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code != 0 and len(err.splitlines()) == 1 and "--section-context" in err
    with pytest.raises(SystemExit) as exc:
        main(["ingest", str(im), str(lab), str(tmp_path / "o.zarr"), "--positive", "255", "--section-context", "-1"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "section-context" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exc:
        main(["ingest", "synthetic:em", str(tmp_path / "s.zarr"), "--section-context", "1"])
    assert exc.value.code == 2 and "does not apply to synthetic data" in capsys.readouterr().err


def test_overlays_of_a_context_dataset_show_the_section_itself(stack, tmp_path):
    from mpfpipe.evaluate.inputs import Prediction, Truth, load_truth, overlay_image
    im, lab, images, _ = stack
    path = ingest([im, lab], tmp_path / "ctx.zarr", positive=255, section_context=2)
    pred = Prediction([np.zeros((12, 10), np.float32)] * 5, 2, {"input": {"path": str(path), "kind": "dataset",
                                                                       "array": "images"}})
    truth = load_truth(str(path))
    for z in (0, 3):
        assert np.array_equal(overlay_image(pred, Truth([], None, None), z), images[z])  # the segmented input
        assert np.array_equal(overlay_image(Prediction([], 2), truth, z), images[z])     # the truth dataset
        assert np.array_equal(overlay_image(pred, truth, z, image=str(path)), images[z])  # an image given
