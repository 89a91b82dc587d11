"""Optimisers: unit checks on quadratics (no Dask), each optimiser lowering the loss on real ISBI crops, and the
`mpfpipe train` command end to end (log, PNG, model provenance, summary)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mpfpipe.cli import main
from mpfpipe.data import open_dataset
from mpfpipe.model import load_model, read_metadata
from mpfpipe.params import init_params, ravel
from mpfpipe.train import DaskOracle, choose_layout, class_weights, train
from mpfpipe.train.checkpoint import load_checkpoint, save_checkpoint
from mpfpipe.train.optim import OptimConfig, gd_step, init_state, lbfgs_direction, lbfgs_step


def _quadratic(n=12, seed=0):
    rng = np.random.default_rng(seed)
    q = np.linalg.qr(rng.standard_normal((n, n)))[0]
    A = q @ np.diag(np.logspace(0, 2, n)) @ q.T
    b = rng.standard_normal(n)

    def fg(x, need):
        return 0.5 * x @ A @ x - b @ x, (A @ x - b) if need else None
    return A, b, fg


def _run(step, fg, n, iters, cfg):
    st = init_state(np.zeros(n), cfg)
    st["f"], st["g"] = fg(st["x"], True)
    for _ in range(iters):
        step(st, fg, cfg)
    return st


def test_lbfgs_beats_gd_on_an_ill_conditioned_quadratic():
    A, b, fg = _quadratic()
    cfg = OptimConfig(lr=0.01, memory=12)
    fstar = fg(np.linalg.solve(A, b), False)[0]
    lb = _run(lbfgs_step, fg, 12, 40, cfg)
    gd = _run(gd_step, fg, 12, 40, cfg)
    assert lb["f"] - fstar < 1e-8
    assert gd["f"] - fstar > 100 * (lb["f"] - fstar)


def test_adam_step_matches_the_published_update():
    """Two steps by hand (Kingma & Ba 2015, Algorithm 1) on f(x) = 0.5 |A x|^2."""
    from mpfpipe.train.optim import adam_step
    A = np.array([[2.0, 0.0], [1.0, 3.0]])

    def fg(x, need):
        return 0.5 * float(np.sum((A @ x) ** 2)), A.T @ (A @ x)
    cfg = OptimConfig(lr=0.1)
    state = init_state(np.array([1.0, -2.0]), cfg)
    x, m, v = state["x"].copy(), np.zeros(2), np.zeros(2)
    for t in (1, 2):
        g = fg(x, True)[1]
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        x = x - 0.1 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
        info = adam_step(state, fg, cfg)
        assert info.ok and state["t"] == t
        np.testing.assert_allclose(state["x"], x, rtol=0, atol=1e-15)
    assert fg(state["x"], False)[0] < fg(np.array([1.0, -2.0]), False)[0]


def test_two_loop_recursion_matches_bfgs_matrix():
    A, _, _ = _quadratic(6, 1)
    rng = np.random.default_rng(2)
    S = rng.standard_normal((3, 6))
    Y = S @ A  # y = A s
    g = rng.standard_normal(6)
    s, y = S[-1], Y[-1]
    H = (s @ y) / (y @ y) * np.eye(6)
    for s, y in zip(S, Y):  # dense BFGS inverse update, oldest first
        rho = 1 / (y @ s)
        V = np.eye(6) - rho * np.outer(y, s)
        H = V.T @ H @ V + rho * np.outer(s, s)
    np.testing.assert_allclose(lbfgs_direction(g, S, Y), -H @ g, rtol=1e-10)


def test_checkpoint_roundtrip_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"x": rng.standard_normal(7), "S": rng.standard_normal((3, 7)), "perm": np.arange(5)}
    state = np.random.default_rng(9).bit_generator.state
    meta = {"f": 0.1 + 0.2, "rng": state, "records": [{"loss": 1 / 3}]}
    save_checkpoint(tmp_path / "c.npz", arrays, meta)
    a, m = load_checkpoint(tmp_path / "c.npz")
    assert all(np.array_equal(a[k], arrays[k]) and a[k].dtype == arrays[k].dtype for k in arrays)
    assert m["f"] == 0.1 + 0.2 and m["records"] == meta["records"] and m["rng"] == state
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]  # no temp file left


def test_choose_layout():
    assert choose_layout(cores=8) == (8, 1)
    assert choose_layout(2, cores=8) == (2, 4)
    assert choose_layout(threads=2, cores=8) == (4, 2)
    assert choose_layout(16, cores=8) == (16, 1)


DROP = {"gd": 0.75, "lbfgs": 0.75, "sgd": 0.8, "adam": 0.8}  # measured: 0.722 -> 0.452 / 0.413 / 0.454 / 0.418


@pytest.mark.parametrize("optimizer", ["gd", "lbfgs", "sgd", "adam"])
def test_each_optimizer_lowers_the_loss(optimizer, isbi_crops, small_net, cluster2, tmp_path):
    ds = open_dataset(isbi_crops)
    idx = ds.split("train")
    epochs = {"sgd": 2, "adam": 3}.get(optimizer, 6)
    r = train(isbi_crops, small_net, optimizer=optimizer, epochs=epochs, batch_size=1, seed=0,
              lr=0.02 if optimizer == "adam" else None,
              out=tmp_path / "m.safetensors", client=cluster2.client, progress=False)
    oracle = DaskOracle(cluster2.client, small_net, ds)
    w = class_weights(oracle.class_counts(idx, 0), True)
    before = oracle.evaluate(ravel(small_net, init_params(small_net, 0)), idx, w, 0, grad=False).loss
    after = oracle.evaluate(r.x, idx, w, 0, grad=False).loss
    oracle.close()
    print(f"{optimizer}: full-batch train loss {before:.4f} -> {after:.4f}")
    assert after < DROP[optimizer] * before, (optimizer, before, after)
    if optimizer not in ("sgd", "adam"):
        assert r.summary["initial_loss"] == pytest.approx(before, rel=1e-12)
        assert [rec["loss"] for rec in r.records] == sorted((rec["loss"] for rec in r.records), reverse=True)
    vals = [rec["val_loss"] for rec in r.records if rec.get("val_loss") is not None]
    assert len(vals) == epochs and r.summary["best_val_loss"] == min(vals)  # the best is the lowest, not the last


def test_cli_end_to_end(isbi_crops, cluster2, tmp_path, capsys):
    out = tmp_path / "model.safetensors"
    args = ["train", str(isbi_crops), "--net", "steel", "--maps", "4", "--hidden", "8", "--optimizer", "sgd",
            "--batch-size", "2", "--epochs", "2", "--augment", "flip,rot90", "--out", str(out),
            "--scheduler", cluster2.address, "--no-progress"]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 0
    cap = capsys.readouterr()
    assert "mpfpipe train: finished after 4 step(s), 2 epoch(s)" in cap.out and "validation" in cap.out
    recs = [json.loads(s) for s in (tmp_path / "model.log.jsonl").read_text().splitlines()]
    assert len(recs) == 4
    for rec in recs:
        assert {"loss", "grad_norm", "step_size", "ls_evals", "seconds"} <= set(rec)
        assert set(rec["seconds"]) == {"total", "compute", "overhead"}
    assert sum("val_loss" in rec for rec in recs) == 2
    assert (tmp_path / "model.loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = read_metadata(out)
    training = meta["provenance"]["training"]
    assert meta["provenance"]["input_dtype"] == "uint8"  # the ISBI crops; segment checks volumes against it
    assert training["optimizer"] == "sgd" and training["steps"] == 4 and training["augment"]["flip"]
    model = load_model(out)
    assert model.class_names == ["cell", "membrane"]
    with pytest.raises(SystemExit) as exc:  # the model exists now
        main(args)
    assert exc.value.code == 1
    assert "exists" in capsys.readouterr().err


def test_adam_step_halves_every_halflife_epochs():
    cfg = OptimConfig(lr=0.01, lr_halflife=4)
    assert [cfg.adam_lr(e) for e in (0, 4, 8)] == pytest.approx([0.01, 0.005, 0.0025])
    assert OptimConfig(lr=0.01).adam_lr(100) == 0.01


@pytest.mark.slow
def test_the_plain_mean_loss_divides_by_the_pixels_the_tasks_counted(isbi_crops, small_net, tmp_path, make_cluster):
    """balance=False: no count round trip; the tasks sum with unit weights and the driver divides by the labelled
    pixels of the same (augmented) evaluation. Rotations make the count differ from the stored one, so a wrong
    divisor shows in the loss."""
    from mpfpipe.data import AugmentSpec
    from mpfpipe.train import LocalOracle
    ds = open_dataset(isbi_crops)
    idx = ds.split("train")
    spec = AugmentSpec(flip=True, rot90=True, rotate=True, max_angle=30.0)
    ref_oracle = LocalOracle(small_net, ds, augment=spec, seed=2)
    counts = ref_oracle.class_counts(idx, 0)
    assert counts.sum() < sum(ds.class_counts([i]).sum() for i in idx)  # rotation left unlabelled corners
    x0 = ravel(small_net, init_params(small_net, 2))
    ref = ref_oracle.evaluate(x0, idx, class_weights(counts, False), 0, grad=True)
    with make_cluster(2, threads=1) as h:
        r = train(isbi_crops, small_net, optimizer="lbfgs", epochs=1, balance=False, augment=spec, seed=2,
                  out=tmp_path / "m.safetensors", client=h.client, progress=False)
    assert r.records[0]["loss_before"] == pytest.approx(ref.loss, rel=1e-12)
    unit = ref_oracle.evaluate(x0, idx, np.ones(2), 0, grad=True)
    # float32 task sums: near-zero entries round differently with unit and 1/count weights (seen on an AMD EPYC
    # host), so the tolerance is relative to the gradient's size; a wrong divisor is off by a whole factor
    np.testing.assert_allclose(unit.grad / counts.sum(), ref.grad, rtol=1e-5, atol=1e-6 * np.abs(ref.grad).max())
