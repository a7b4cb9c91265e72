"""Stein variational gradient descent (Liu & Wang 2016) with plain, annealed and tempered schedules.

The update moves every particle along

.. math::

    \\phi(x_i) = \\frac{1}{N} \\sum_j \\Big[ k(x_j, x_i)\\, \\beta_t\\, s_t(x_j)
                 + \\nabla_{x_j} k(x_j, x_i) \\Big],

written as matrix products over the N x N kernel matrix: for a radial kernel
:math:`k = f(\\|x - y\\|^2/\\ell^2)`, :math:`\\phi = (K S + \\tfrac{2}{\\ell^2}(F' X - \\mathrm{diag}(F' 1) X)) / N`.
With the median heuristic the RBF kernel between two particles at the median distance is
:math:`1/(N+1)` in any dimension, so in moderate dimension each particle feels about one
neighbour's repulsion and the particles shrink (sd ratio 0.48 at d = 20, 0.31 at d = 50 with
N = 200); :func:`spread_keeping_lengthscale` widens the kernel once the schedule has reached the
target. A schedule fixes, at each step, the inverse temperature :math:`\\beta_t`, the noise
level :math:`\\sigma_t` (a number, or one per coordinate) of the smoothed target
:math:`p * N(0, \\mathrm{diag}(\\sigma_t^2))` whose score :math:`s_t` is followed, and an optional
Langevin noise. Steps run inside :func:`jax.lax.scan`, in chunks so a progress bar can follow them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache, partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from .devices import map_rows, place_on_rows, shard_rows
from .host import split_keys
from .kernels import RBF, squared_distances
from .ksd import ksd
from .runs import Run
from .target import Target

__all__ = ["Level", "Schedule", "SVGDInfo", "SVGDKernel", "SVGDState", "plain", "annealed", "tempered", "chain", "svgd"]

DEFAULT_STEP_SIZE = 0.05
BANDWIDTH_EVERY = 10  # steps between median-heuristic refreshes; particles move little in 10 steps


# ---------------------------------------------------------------------------- schedules
class Level(NamedTuple):
    """What a schedule sets at one step: inverse temperature, smoothing scale (a scalar, or ``(d,)``
    per coordinate), Langevin noise."""

    beta: jax.Array
    sigma: jax.Array
    noise: jax.Array


@dataclass(frozen=True)
class Schedule:
    """A map from progress ``u = t / (T - 1)`` in [0, 1] to a :class:`Level`, with a name.

    Schedules compose with :func:`chain` (whose ``parts`` are kept). ``num_noise`` is the
    number of Gaussian perturbations per particle used to estimate the smoothed score
    (0: no smoothing). ``kind`` (``"plain"``, ``"annealed"``, ``"tempered"`` or ``"chain"``)
    names the run it makes (``svgd``, ``svgd_annealed``, ...); ``name`` describes it.
    """

    name: str
    level: Callable[[jax.Array], Level]
    num_noise: int = 0
    sigma_max: float | None = None  # None: resolved from the target by svgd(); else the largest sigma
    parts: tuple[Schedule, ...] = ()  # the schedules a chain() was built from
    kind: str = "plain"

    def resolve(self, target: Target, rng_key) -> Schedule:
        """Fill a ``sigma_max`` left to the target, one per coordinate: twice the robust spread
        (:func:`robust_spread`) of 512 of the target's initial points.

        A chain resolves each part on its own, so a part whose ``sigma_max`` was given keeps it.
        """
        if self.parts:
            return chain(*(part.resolve(target, rng_key) for part in self.parts))
        if self.num_noise == 0 or self.sigma_max is not None:
            return self
        scale = 2.0 * robust_spread(target.initial_points(rng_key, 512))
        return replace(self, level=partial(_rescale_sigma, self.level, scale), sigma_max=float(jnp.max(scale)))


def robust_spread(x) -> jax.Array:
    """Per-coordinate spread of ``x (n, d)``: the central 90% range over its Gaussian value,
    :math:`(q_{0.95} - q_{0.05}) / (2 \\cdot 1.645)`. It is the standard deviation for Gaussian
    draws and spans any mode that holds more than 5% of them (where the median absolute
    deviation of a 0.1 / 0.9 mixture sees one mode only), yet the last 5% of a heavy tail (the
    log of a HalfCauchy draw, a Cauchy draw) cannot inflate it as they inflate the sample
    standard deviation. A coordinate with no spread at all gets 1."""
    low, high = jnp.quantile(x, jnp.array([0.05, 0.95]), axis=0)
    spread = (high - low) / (2.0 * 1.6448536)
    return jnp.where(spread > 0, spread, 1.0)


def _rescale_sigma(level, sigma_max, u):
    """``level``'s sigma (from 1 to 0) times ``sigma_max``: a number, or ``(d,)`` per coordinate."""
    lv = level(u)
    return lv._replace(sigma=lv.sigma * sigma_max if jnp.ndim(sigma_max) == 0 else lv.sigma[..., None] * sigma_max)


def _held(u, final_fraction):
    """Progress through the schedule's moving part: 0 -> 1 over the first 1 - final_fraction."""
    return jnp.clip(u / (1.0 - final_fraction), 0.0, 1.0)


def plain() -> Schedule:
    """Plain SVGD: :math:`\\beta_t = 1`, :math:`\\sigma_t = 0`."""
    return Schedule("plain", lambda u: Level(jnp.ones_like(u), jnp.zeros_like(u), jnp.zeros_like(u)))


def annealed(
    sigma_max: float | None = None, num_levels: int = 50, final_fraction: float = 0.25, num_noise: int = 32
) -> Schedule:
    """Gaussian-noise annealing (Song & Ermon 2019): follow the score of :math:`p * N(0, \\sigma_t^2 I)`.

    :math:`\\sigma_t` steps down through ``num_levels`` equal levels from ``sigma_max``
    to 0 over the first ``1 - final_fraction`` of the run, then stays at 0 (plain
    SVGD). The smoothed score

    .. math::

        \\nabla \\log (p * \\varphi_\\sigma)(x)
        = \\frac{E_e[p(x + \\sigma e)\\, s(x + \\sigma e)]}{E_e[p(x + \\sigma e)]},
        \\qquad e \\sim N(0, I),

    is estimated by self-normalised importance sampling with ``num_noise`` draws of
    ``e`` per particle and log-sum-exp weights. ``sigma_max=None`` smooths each coordinate on
    its own scale, :math:`\\sigma_{t,i} = \\sigma_t\\, 2 s_i` with :math:`\\sigma_t` from 1 to 0 and
    :math:`s_i` the robust spread of coordinate ``i`` over the target's initial points (prior
    draws, or numpyro's ``init_to_uniform`` box): the noise then spans the region where the
    modes can be in every coordinate at once, a shifted or rescaled coordinate gets noise
    shifted or rescaled alike, a heavy-tailed prior cannot inflate it, and the widest
    coordinate does not set the noise of the narrow ones (one sigma for all, sized by a wide
    prior, throws a narrow coordinate far outside its range). A given ``sigma_max`` is one
    scale for every coordinate.

    The ratio estimator is biased at O(1/num_noise), most where ``sigma`` is large
    against the modes. A smoothed step evaluates the log density and its gradient
    ``num_noise`` times per particle instead of once, so where the likelihood dominates the
    cost, the smoothed part of a run takes up to ``num_noise`` times plain SVGD's time.
    Measured bias and times: ``docs/benchmarks.md``.
    """

    steps_down = optax.schedules.linear_schedule(1.0, 0.0, transition_steps=num_levels)  # 1 -> 0 by level

    def level(u):
        sigma = steps_down(jnp.floor(_held(u, final_fraction) * num_levels))
        return Level(jnp.ones_like(u), sigma, jnp.zeros_like(u))

    if sigma_max is None:
        return Schedule("annealed", level, num_noise, None, kind="annealed")
    return Schedule(
        "annealed", partial(_rescale_sigma, level, float(sigma_max)), num_noise, float(sigma_max), kind="annealed"
    )


def tempered(
    beta: float | None = None,
    beta_min: float = 0.01,
    kind: str = "geometric",
    num_cycles: int = 1,
    power: float = 1.0,
    final_fraction: float = 0.25,
    langevin: float = 0.0,
) -> Schedule:
    """Tempering: follow :math:`\\beta_t \\nabla \\log p`, the score of :math:`p^{\\beta_t}`.

    - ``beta`` given: a fixed power posterior :math:`p^\\beta` for the whole run.
    - ``kind="geometric"``: :math:`\\beta` rises geometrically from ``beta_min`` to 1 over
      the first ``1 - final_fraction`` of the run, then stays at 1.
    - ``kind="cyclic"``: D'Angelo & Fortuin (2021), :math:`\\beta = (\\text{mod}(u', 1/C) \\cdot C)^{power}`
      over ``C = num_cycles`` cycles of the moving part, then 1. (numpyro's ASVGD scales the
      score by ``N * beta``; the paper, and this function, use ``beta``.)

    ``langevin > 0`` adds :math:`\\sqrt{2\\epsilon}\\,\\mathrm{langevin}\\,(1 - \\beta_t)\\, z`,
    :math:`z \\sim N(0, I)`, to each step of size :math:`\\epsilon` while :math:`\\beta_t < 1`,
    so particles can cross between modes.
    """
    if beta is not None:
        if not 0.0 < beta:
            raise ValueError(f"beta must be positive, got {beta}.")
        return Schedule(
            f"tempered(beta={beta:g})",
            lambda u: Level(jnp.full_like(u, beta), jnp.zeros_like(u), jnp.zeros_like(u)),
            kind="tempered",
        )
    if kind not in ("geometric", "cyclic"):
        raise ValueError(f"kind must be 'geometric' or 'cyclic', got {kind!r}.")

    if kind == "geometric" and not 0.0 < beta_min <= 1.0:
        raise ValueError(f"a geometric schedule needs 0 < beta_min <= 1, got {beta_min}.")
    if kind == "geometric":  # beta_min * (1 / beta_min)^v = beta_min^(1 - v) over the moving part's progress v
        geometric = optax.schedules.exponential_decay(
            beta_min, transition_steps=1, decay_rate=1.0 / beta_min, end_value=1.0
        )

    def level(u):
        v = _held(u, final_fraction)
        if kind == "geometric":
            b = geometric(v)
        else:
            phase = jnp.mod(v * num_cycles, 1.0)
            b = jnp.where(v >= 1.0, 1.0, jnp.maximum(phase**power, beta_min))
        return Level(b, jnp.zeros_like(u), langevin * (1.0 - b))

    return Schedule(f"tempered({kind})", level, kind="tempered")


def chain(*schedules: Schedule) -> Schedule:
    """Compose schedules: inverse temperatures multiply, Gaussian smoothings add in variance
    (:math:`\\sigma^2 = \\sum \\sigma_k^2`), Langevin noise takes the largest."""

    def level(u):
        levels = [s.level(u) for s in schedules]
        sigmas = [lv.sigma for lv in levels]
        if any(jnp.ndim(s) > jnp.ndim(u) for s in sigmas):  # one per coordinate: give every part a d axis
            sigmas = [s if jnp.ndim(s) > jnp.ndim(u) else s[..., None] for s in sigmas]
        return Level(
            math.prod(lv.beta for lv in levels),
            jnp.sqrt(sum(s**2 for s in sigmas)),
            jnp.max(jnp.stack([lv.noise for lv in levels]), axis=0),
        )

    sigmas = [s.sigma_max for s in schedules if s.num_noise]
    return Schedule(
        " + ".join(s.name for s in schedules),
        level,
        max(s.num_noise for s in schedules),
        None if any(v is None for v in sigmas) else (math.sqrt(sum(v * v for v in sigmas)) if sigmas else None),
        tuple(schedules),
        kind="chain",
    )


# ---------------------------------------------------------------------------- the update
def smoothed_score(target: Target, x, sigma, noise):
    """SNIS estimate of the score of :math:`p * N(0, \\mathrm{diag}(\\sigma^2))` at ``x (N, d)``;
    ``sigma`` a number or ``(d,)``, ``noise (N, K, d)`` standard normal.

    A noisy point whose log density or score is not finite (outside the support) gets weight 0;
    a particle none of whose noisy points is finite keeps its own score.
    """
    y = x[:, None, :] + sigma * noise
    log_p, scores = target.log_density_and_score(y)
    finite = jnp.isfinite(log_p) & jnp.all(jnp.isfinite(scores), axis=-1)
    weights = jax.nn.softmax(jnp.where(finite, log_p, -jnp.inf), axis=1)
    smoothed = jnp.einsum("nk,nkd->nd", weights, jnp.where(finite[..., None], scores, 0.0))
    return jnp.where(jnp.any(finite, axis=1, keepdims=True), smoothed, target.score(x))


def spread_keeping_lengthscale(median_lengthscale, num_particles: int, dim: int):
    """The median heuristic's RBF lengthscale widened by :math:`\\sqrt{\\min(d, \\log(N + 1))}`.

    The median heuristic :math:`2\\ell^2 = \\mathrm{med}^2 / \\log(N+1)` puts the kernel at
    :math:`1/(N+1)` at the median distance; in d dimensions almost every pair sits near that
    distance, so the repulsion that keeps the particles apart fades and SVGD shrinks the posterior
    (measured: sd ratio 0.87 at d = 5, 0.48 at d = 20, 0.31 at d = 50 with N = 200). Widened,

    .. math::

        2\\ell^2 = \\mathrm{med}^2 \\min\\big(1, d / \\log(N + 1)\\big),

    the kernel at the median distance is :math:`\\min((N+1)^{-1/d}, e^{-1})`: unchanged in one
    dimension, and from :math:`d \\ge \\log(N+1)` the lengthscale
    :math:`\\ell = \\mathrm{med}/\\sqrt 2` at which two particles at the median distance repel
    each other most. Measured sd ratios and where they still fall short: ``docs/benchmarks.md``.
    """
    return median_lengthscale * math.sqrt(min(float(dim), math.log(num_particles + 1.0)))


def svgd_direction(x, scores, kernel, lengthscale):
    """:math:`\\phi(x_i)` for all particles as matrix products, ``(N, d)``; the rows ``i`` of the
    ``N x N`` kernel matrix are split over the devices (:func:`~numpyro_stein_diag.devices.map_rows`)."""
    l2 = lengthscale**2
    x = x - jnp.mean(x, axis=0)  # phi depends on differences x_j - x_i only; centring keeps float32 exact

    def rows(xi):  # phi at this device's particles xi, from all particles x and scores
        f, f1, _ = kernel.profile(squared_distances(xi, x) / l2)
        repulsion = (2.0 / l2) * (f1 @ x - jnp.sum(f1, axis=1, keepdims=True) * xi)
        return (f @ scores + repulsion) / x.shape[0]

    return map_rows(rows, x.shape[0])(x)


class SVGDState(NamedTuple):
    """Particles ``(N, d)``, the optimizer's state, the kernel's own lengthscale (refreshed every
    ``BANDWIDTH_EVERY`` steps; :meth:`SVGDKernel.step` may widen it) and the number of steps taken."""

    particles: jax.Array
    opt_state: optax.OptState
    lengthscale: jax.Array
    step: jax.Array


class SVGDInfo(NamedTuple):
    """What one step did: its inverse temperature, its (largest) smoothing scale, and the RMS of
    the update direction :math:`\\phi` over the particles."""

    beta: jax.Array
    sigma: jax.Array
    step_norm: jax.Array


PLAIN = Level(1.0, 0.0, 0.0)  # beta 1, no smoothing, no Langevin noise (numbers: no JAX work at import)


@dataclass(frozen=True)
class SVGDKernel:
    """One SVGD update in the blackjax shape: ``init(position) -> SVGDState`` and
    ``step(rng_key, state, level) -> (SVGDState, SVGDInfo)``, both pure and jit-able.

    ``level`` (a :class:`Level`: beta, sigma, Langevin noise scale of this step, the latter
    already multiplied by :math:`\\sqrt{2 \\epsilon}`) is what a schedule sets; :func:`svgd`
    evaluates the schedule ahead and scans ``step`` over it. The kernel is hashable, so the
    compiled loop is cached per (target, optimizer, kernel, num_noise, keep_spread): reuse one
    optimizer object across runs (a fresh ``optax.adam(...)`` per call compiles again), and give a
    kernel's lengthscale as a number, not an array.

    ``keep_spread`` (default on) widens an ``RBF()`` kernel's median-heuristic lengthscale by
    :func:`spread_keeping_lengthscale` at every step whose level has reached the target
    (:math:`\\beta = 1`, :math:`\\sigma = 0`); while a schedule explores (:math:`\\beta < 1` or
    :math:`\\sigma > 0`) the narrow median kernel is kept, since a wide one moves the particles
    as one cloud that cannot split between modes (measured on a d = 20 mixture: every particle
    ends in the heavier mode). A lengthscale you give, and other kernels, are used as given.
    """

    target: Target
    optimizer: optax.GradientTransformation
    kernel: object = RBF()
    num_noise: int = 0  # Gaussian perturbations per particle for the smoothed score (0: none)
    keep_spread: bool = True

    def init(self, position) -> SVGDState:
        position = jnp.asarray(position)
        return SVGDState(
            position, self.optimizer.init(position), self.kernel.resolve_lengthscale(position), jnp.zeros((), jnp.int32)
        )

    def step(self, rng_key, state: SVGDState, level: Level = PLAIN) -> tuple[SVGDState, SVGDInfo]:
        x = shard_rows(state.particles)  # the scores are computed where the particles are
        lengthscale = jax.lax.cond(
            state.step % BANDWIDTH_EVERY == 0, self.kernel.resolve_lengthscale, lambda _: state.lengthscale, x
        )
        k_noise, k_langevin = jax.random.split(rng_key)
        score = _followed_score(self.target, x, level.sigma, self.num_noise, k_noise)
        phi = svgd_direction(x, level.beta * score, self.kernel, self._step_lengthscale(lengthscale, level, x.shape))
        updates, opt_state = self.optimizer.update(-phi, state.opt_state, x)
        moved = jax.lax.cond(  # Langevin noise only where the schedule asks for it: no RNG cost otherwise
            level.noise > 0,
            lambda y: y + level.noise * jax.random.normal(k_langevin, x.shape, x.dtype),
            lambda y: y,
            optax.apply_updates(x, updates),
        )
        info = SVGDInfo(level.beta, jnp.max(level.sigma), jnp.sqrt(jnp.mean(jnp.sum(phi**2, -1))))
        return SVGDState(moved, opt_state, lengthscale, state.step + 1), info

    def _step_lengthscale(self, lengthscale, level: Level, shape):
        """The kernel's lengthscale, widened (:func:`spread_keeping_lengthscale`) where
        ``keep_spread`` applies and the level has reached the target."""
        if not (self.keep_spread and isinstance(self.kernel, RBF) and self.kernel.lengthscale is None):
            return lengthscale
        at_target = (jnp.asarray(level.beta) >= 1.0) & jnp.all(jnp.asarray(level.sigma) <= 0.0)
        return jnp.where(at_target, spread_keeping_lengthscale(lengthscale, *shape), lengthscale)


class StepInputs(NamedTuple):
    """What each step of a run reads besides the state: the schedule is evaluated ahead, for every step."""

    key: jax.Array
    level: Level
    active: jax.Array  # False on the padding that makes every chunk the same length


def _followed_score(target, x, sigma, num_noise, key):
    """The score followed at one step: the smoothed one while ``sigma > 0`` (lax.cond runs one
    branch, so the num_noise-fold estimate is skipped once sigma reaches 0), else the plain one."""
    if not num_noise:
        return target.score(x)
    return jax.lax.cond(
        jnp.any(sigma > 0),
        lambda: smoothed_score(target, x, sigma, jax.random.normal(key, (x.shape[0], num_noise, x.shape[1]), x.dtype)),
        lambda: target.score(x),
    )


@partial(jax.jit, static_argnums=0)
def _run_chunk(update: SVGDKernel, state: SVGDState, inputs: StepInputs):
    """``len(inputs.active)`` steps of ``update`` in one :func:`jax.lax.scan`; compiled once per
    kernel and chunk shape (the schedule enters as data). Inactive (padding) steps keep the state."""

    def body(state, inputs):
        new, info = update.step(inputs.key, state, inputs.level)
        return jax.tree.map(lambda a, b: jnp.where(inputs.active, a, b), new, state), info

    return jax.lax.scan(body, state, inputs)


@cache
def _adam(step_size: float) -> optax.GradientTransformation:
    """The default optimizer, one object per step size so that repeated runs hit the jit cache."""
    return optax.adam(step_size)


def _step_inputs(schedule: Schedule, rng_key, num_steps: int, chunk: int, step_size: float) -> StepInputs:
    """Every step's inputs, padded with inactive steps to a whole number of chunks."""
    padded = -(-num_steps // chunk) * chunk
    t = jnp.arange(padded)
    level = schedule.level(jnp.minimum(t / max(num_steps - 1, 1), 1.0))
    keys = jax.random.split(rng_key, num_steps)
    keys = jnp.concatenate([keys, jnp.broadcast_to(keys[-1:], (padded - num_steps,) + keys.shape[1:])])
    return StepInputs(keys, level._replace(noise=math.sqrt(2.0 * step_size) * level.noise), t < num_steps)


def svgd(
    target: Target,
    rng_key,
    num_particles: int = 512,
    num_steps: int = 2000,
    schedule: Schedule | None = None,
    kernel=RBF(),
    optimizer: optax.GradientTransformation | None = None,
    step_size: float = DEFAULT_STEP_SIZE,
    init=None,
    progress_bar: bool = True,
    num_checkpoints: int = 5,
    method: str | None = None,
    keep_spread: bool = True,
) -> Run:
    """Run SVGD on ``target``; return a :class:`~numpyro_stein_diag.runs.Run` with ``chain = 1``.

    Parameters
    ----------
    schedule : Schedule
        :func:`plain` (default), :func:`annealed`, :func:`tempered`, or a :func:`chain` of them.
    kernel : RBF or IMQ
        ``RBF()`` uses the median heuristic on a 128-particle subsample, refreshed every
        10 steps (at every step it would cost as much as the update at N = 256).
    keep_spread : bool
        Widen ``RBF()``'s median lengthscale by :math:`\\sqrt{\\min(d, \\log(N+1))}` once the
        schedule has reached the target (:class:`SVGDKernel`), so that SVGD keeps the posterior's
        spread in moderate dimension (sd ratio 0.95-0.99 at d = 20-50, N = 200, instead of
        0.31-0.48). One-dimensional runs are unchanged. ``False``: the plain median heuristic.
    optimizer : optax.GradientTransformation
        Default ``optax.adam(step_size)`` (Adam's per-coordinate scaling makes one step size
        work across models whose coordinates have different scales).
    step_size : float
        The default optimizer's learning rate, and the step the Langevin noise of a
        tempered schedule is scaled by (:math:`\\sqrt{2 \\epsilon}`), also with your own optimizer.
    init : array (N, d) or None
        Starting particles (then ``num_particles`` is N); default ``target.initial_points``
        (prior draws).
    num_checkpoints : int
        Number of points (evenly spaced, the last at the end) where the KSD of the
        particles against the target is recorded in ``history["ksd"]``.
    """
    schedule = plain() if schedule is None else schedule
    k_init, k_sched, k_run = split_keys(rng_key, 3)
    schedule = schedule.resolve(target, k_sched)
    if init is None:
        x = target.initial_points(k_init, num_particles)
    else:
        x = jnp.asarray(init)
        if x.ndim != 2 or x.shape[1] != target.dim:
            raise ValueError(f"init has shape {x.shape}; expected (num_particles, {target.dim}).")
    update = SVGDKernel(
        target, _adam(float(step_size)) if optimizer is None else optimizer, kernel, schedule.num_noise, keep_spread
    )
    state = place_on_rows(update.init(x), x.shape[0])  # laid out as every chunk returns it: one compilation
    chunk = -(-num_steps // max(1, min(num_checkpoints, num_steps)))  # equal chunks: one compilation
    inputs = _step_inputs(schedule, k_run, num_steps, chunk, step_size)
    infos, checkpoints = [], []
    bar = tqdm(total=num_steps, desc=f"SVGD ({schedule.name})", disable=not progress_bar, leave=False)
    for start in range(0, num_steps, chunk):
        state, info = _run_chunk(update, state, jax.tree.map(lambda v: v[start : start + chunk], inputs))
        state = place_on_rows(state, x.shape[0])  # a no-op in one process; with several, every process reads it
        stop = min(start + chunk, num_steps)
        if not _finite(state.particles):
            bar.close()
            advice = (
                f"lower the step size (step_size={step_size / 5:g}; from diagnose(): methods={{name: "
                "{'step_size': ...}}, from the command line: --set name.step_size=...)"
                if optimizer is None
                else "lower your optimizer's learning rate"
            )
            if schedule.num_noise:
                advice += f", or the smoothing (sigma_max below {schedule.sigma_max:.3g})"
            raise FloatingPointError(
                f"SVGD ({schedule.name}) produced non-finite particles by step {stop} of {num_steps}; "
                f"{advice}, or check the model's log density for overflow."
            )
        infos.append(jax.device_get(info)._asdict())
        checkpoints.append((stop, float(ksd(target, state.particles))))
        bar.update(stop - start)
    bar.close()
    history = {k: np.concatenate([i[k] for i in infos])[:num_steps] for k in infos[0]}
    history["ksd_step"] = np.array([c[0] for c in checkpoints])
    history["ksd"] = np.array([c[1] for c in checkpoints])
    return Run(
        method=method or ("svgd" if schedule.kind == "plain" else f"svgd_{schedule.kind}"),
        draws=state.particles[None],
        samples=target.constrain(state.particles[None]),
        history=history,
        independent=True,
    )


def _finite(x) -> bool:
    return bool(jnp.all(jnp.isfinite(x)))
