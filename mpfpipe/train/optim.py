"""Synchronous optimisers on the driver: gradient descent and mini-batch SGD with Armijo backtracking, L-BFGS
(two-loop recursion) with its own history so that it can be checkpointed and resumed exactly, and mini-batch Adam
(Kingma & Ba 2015; fixed step ``lr``, one gradient pass per step and no line search, which makes it the cheapest
per step on large images).

Every optimiser is a *step function* ``step(state, fg, cfg) -> StepInfo`` that updates a plain ``state`` dict of
float64 arrays and JSON scalars in place (`checkpoint` stores it as is). ``fg(x, need_grad) -> (f, g | None)`` is
the objective of this step (a batch, fixed class weights and augmentation epoch). All arithmetic is float64 and
sequential, so a step is a deterministic function of (state, objective): a resumed run repeats the undisturbed one.

Line search (Armijo): from a trial step t0 along a descent direction d, accept the first t = t0 * shrink^j with
f(x + t d) <= f(x) + c1 t g.d. The first trial is evaluated with its gradient when the optimiser needs the
gradient at the new point (GD, L-BFGS: the first trial is usually accepted, and a gradient pass costs about three
loss-only passes), later trials without; if an accepted trial had no gradient it is computed once more. The next
step's first trial is 2t when t was accepted at once, else t (bounded by ``max_step``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._reproducible import dot
from ..options import OPTIMIZERS  # noqa: F401 - declared once there; its old import path

MINIBATCH = ("sgd", "adam")     # one step = one batch of images (the others: one step = the whole training split)
DEFAULT_LR = {"adam": 1e-3}     # the others: the first trial step of the line search, 1.0


def norm(v) -> float:
    """|v| from `dot`: the same bits on every CPU (np.linalg.norm calls OpenBLAS's ddot)."""
    return float(np.sqrt(dot(v, v)))


@dataclass
class OptimConfig:
    lr: float = 1.0          # first trial step of the first line search (and after an L-BFGS reset)
    c1: float = 1e-4         # Armijo sufficient-decrease constant
    shrink: float = 0.5      # backtracking factor
    max_evals: int = 20      # trials per line search
    max_step: float = 1e4
    memory: int = 10         # L-BFGS pairs kept
    beta1: float = 0.9       # Adam moment decay rates and denominator guard
    beta2: float = 0.999
    eps: float = 1e-8
    lr_halflife: float = 0.0 # adam: the step halves every this many epochs (0: constant)

    def adam_lr(self, epoch: int) -> float:
        return self.lr * 0.5 ** (epoch / self.lr_halflife) if self.lr_halflife > 0 else self.lr

    def to_dict(self) -> dict:
        return dict(lr=self.lr, c1=self.c1, shrink=self.shrink, max_evals=self.max_evals, max_step=self.max_step,
                    memory=self.memory, beta1=self.beta1, beta2=self.beta2, eps=self.eps,
                    lr_halflife=self.lr_halflife)


@dataclass
class StepInfo:
    ok: bool                 # a step was taken
    loss_before: float
    loss: float              # objective at the new point (== loss_before when not ok)
    grad_norm: float         # |g| at the start of the step
    step_size: float
    evals: int               # objective evaluations in the line search (incl. the extra gradient pass)
    reset: bool = False      # L-BFGS history dropped
    note: str = ""
    extra: dict = field(default_factory=dict)


def init_state(x0: np.ndarray, cfg: OptimConfig) -> dict:
    n = x0.size
    return {"x": np.asarray(x0, np.float64).copy(), "f": None, "g": None, "fkey": None, "alpha": float(cfg.lr),
            "S": np.zeros((0, n)), "Y": np.zeros((0, n)), "m": None, "v": None, "t": 0}


def armijo(fg, x, f, g, d, t0, cfg: OptimConfig, want_grad: bool):
    """Backtracking line search; returns (ok, t, x_new, f_new, g_new or None, evals)."""
    slope = dot(g, d)
    t = float(t0)
    evals = 0
    for k in range(cfg.max_evals):
        xn = x + t * d
        need = want_grad and k == 0
        fn, gn = fg(xn, need)
        evals += 1
        if np.isfinite(fn) and fn <= f + cfg.c1 * t * slope:
            if want_grad and gn is None:
                fn, gn = fg(xn, True)
                evals += 1
            return True, t, xn, fn, gn, evals
        t *= cfg.shrink
    return False, 0.0, x, f, g, evals


def _next_alpha(t, t0, cfg):
    return float(min(2.0 * t if t >= t0 else t, cfg.max_step))


def gd_step(state: dict, fg, cfg: OptimConfig) -> StepInfo:
    """Full-batch gradient descent, d = -g. Needs state f, g at x for this objective (see `ensure_fg`)."""
    x, f, g = state["x"], state["f"], state["g"]
    gn = norm(g)
    t0 = state["alpha"]
    ok, t, xn, fn, gnew, ev = armijo(fg, x, f, g, -g, t0, cfg, want_grad=True)
    if ok:
        state.update(x=xn, f=fn, g=gnew, alpha=_next_alpha(t, t0, cfg))
    return StepInfo(ok, f, fn, gn, t, ev, note="" if ok else "line search failed")


def lbfgs_direction(g, S, Y) -> np.ndarray:
    """-H g by the two-loop recursion over pairs (oldest first), H0 = (s.y / y.y) I of the newest pair."""
    q = g.copy()
    m = S.shape[0]
    rho = [1.0 / dot(Y[i], S[i]) for i in range(m)]
    a = [0.0] * m
    for i in range(m - 1, -1, -1):
        a[i] = rho[i] * dot(S[i], q)
        q -= a[i] * Y[i]
    gamma = dot(S[-1], Y[-1]) / dot(Y[-1], Y[-1]) if m else 1.0
    r = gamma * q
    for i in range(m):
        b = rho[i] * dot(Y[i], r)
        r += (a[i] - b) * S[i]
    return -r


def lbfgs_step(state: dict, fg, cfg: OptimConfig) -> StepInfo:
    """L-BFGS with an Armijo line search (first trial t = 1 once there is history). A pair (s, y) is kept only
    when s.y > 1e-10 |s||y| (Armijo does not guarantee curvature); a non-descent direction or a failed search
    drops the history and retries along -g."""
    x, f, g = state["x"], state["f"], state["g"]
    gn = norm(g)
    S, Y = state["S"], state["Y"]
    reset = False
    evals = 0
    for attempt in range(2):
        if S.shape[0]:
            d = lbfgs_direction(g, S, Y)
            if not dot(g, d) < 0:
                S, Y, reset = S[:0], Y[:0], True
                continue
            t0 = 1.0
        else:
            d, t0 = -g, state["alpha"]
        ok, t, xn, fn, gnew, ev = armijo(fg, x, f, g, d, t0, cfg, want_grad=True)
        evals += ev
        if ok:
            break
        if not S.shape[0]:
            break
        S, Y, reset = S[:0], Y[:0], True
    if not ok:
        state.update(S=S, Y=Y)
        return StepInfo(False, f, f, gn, 0.0, evals, reset, "line search failed")
    s, y = xn - x, gnew - g
    sy = dot(s, y)
    if sy > 1e-10 * norm(s) * norm(y):
        S = np.vstack([S, s[None]])[-cfg.memory:]
        Y = np.vstack([Y, y[None]])[-cfg.memory:]
    if not state["S"].shape[0] or reset:  # a steepest-descent step: adapt its trial step like GD
        state["alpha"] = _next_alpha(t, t0, cfg)
    state.update(x=xn, f=fn, g=gnew, S=S, Y=Y)
    return StepInfo(True, f, fn, gn, t, evals, reset, extra={"pairs": int(S.shape[0])})


def sgd_step(state: dict, fg, cfg: OptimConfig) -> StepInfo:
    """One mini-batch step: gradient on the batch, Armijo on the same batch (loss-only trials)."""
    x = state["x"]
    f, g = fg(x, True)
    gn = norm(g)
    t0 = state["alpha"]
    ok, t, xn, fn, _, ev = armijo(fg, x, f, g, -g, t0, cfg, want_grad=False)
    if ok:
        state.update(x=xn, alpha=_next_alpha(t, t0, cfg))
    else:  # a batch where no step helps (e.g. already fitted): keep x, retry the next batch with a smaller step
        state["alpha"] = float(max(t0 * cfg.shrink ** cfg.max_evals, 1e-12))
    state.update(f=None, g=None, fkey=None)
    return StepInfo(ok, f, fn, gn, t, ev + 1, note="" if ok else "no decrease on this batch")


def adam_step(state: dict, fg, cfg: OptimConfig) -> StepInfo:
    """One mini-batch Adam step with bias-corrected moments and step ``cfg.lr`` (the driver passes the scheduled
    value, `OptimConfig.adam_lr`). ``loss`` is the batch loss *before* the step (no extra pass evaluates it after)."""
    x = state["x"]
    f, g = fg(x, True)
    gn = norm(g)
    if not np.isfinite(f) or not np.all(np.isfinite(g)):
        state.update(f=None, g=None, fkey=None)
        return StepInfo(False, f, f, gn, 0.0, 1, note="non-finite loss or gradient: step skipped")
    t = int(state.get("t") or 0) + 1
    m = np.zeros_like(x) if state.get("m") is None else state["m"]
    v = np.zeros_like(x) if state.get("v") is None else state["v"]
    m = cfg.beta1 * m + (1.0 - cfg.beta1) * g
    v = cfg.beta2 * v + (1.0 - cfg.beta2) * (g * g)
    mhat = m / (1.0 - cfg.beta1 ** t)
    vhat = v / (1.0 - cfg.beta2 ** t)
    state.update(x=x - cfg.lr * mhat / (np.sqrt(vhat) + cfg.eps), m=m, v=v, t=t, f=None, g=None, fkey=None)
    return StepInfo(True, f, f, gn, cfg.lr, 1)


STEPS = {"gd": gd_step, "lbfgs": lbfgs_step, "sgd": sgd_step, "adam": adam_step}
