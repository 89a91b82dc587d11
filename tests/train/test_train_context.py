"""Training on a dataset ingested with section context: the net reads its stacked maps and the model file records the
context, so segment stacks a plain volume's sections the same way."""
import numpy as np

from mpfpipe.data import ingest
from mpfpipe.model import load_model
from mpfpipe.train import train


def test_the_model_records_the_datasets_section_context(tmp_path):
    rng = np.random.default_rng(3)
    np.save(tmp_path / "im.npy", rng.integers(0, 255, (4, 24, 24)).astype(np.uint8))
    np.save(tmp_path / "lab.npy", (rng.random((4, 24, 24)) < 0.4).astype(np.uint8))
    ds = ingest([tmp_path / "im.npy", tmp_path / "lab.npy"], tmp_path / "d.zarr", section_context=1,
                split=[0.5, 0.5])
    r = train(ds, "steel", maps=2, hidden=3, epochs=1, out=tmp_path / "m.safetensors", workers=1, threads=1,
              progress=False)
    model = load_model(r.files["model"])
    assert model.section_context == 1 and model.net.in_channels == 3
    assert len(model.normalisation["mean"]) == 3
