"""Modes of the target: discovery by L-BFGS from many starts, and basins of attraction.

A mode ``m`` of :math:`\\log \\pi` (unconstrained, Jacobian included) carries its Hessian
:math:`H = -\\nabla^2 \\log \\pi(m)` and its Laplace log mass

.. math::

    \\log Z_{\\text{Laplace}} = \\log \\pi(m) + \\tfrac{d}{2} \\log 2\\pi - \\tfrac12 \\log\\det H.

The basin ``B_k`` of mode ``k`` is the set of points whose ascent ends at it
(:func:`assign_basins`). The masses of the basins are estimated in
:mod:`~numpyro_stein_diag.masses`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Literal, NamedTuple, get_args

import jax
import jax.numpy as jnp
import numpy as np
import optax
import xarray as xr
from optax.tree_utils import tree_get
from scipy.special import logsumexp

from .devices import map_rows
from .discovery import unseen_chance
from .host import map_chunks
from .target import Target

__all__ = ["Degenerate", "Modes", "Runaway", "find_modes", "merge_modes", "mode_labels"]


@dataclass(frozen=True, eq=False)
class Modes:
    """K modes of the target (sorted by log density, highest first), as the search found them.

    Attributes: ``location (K, d)`` unconstrained, ``log_density (K,)``, ``hessian (K, d, d)``
    of the negative log density, ``laplace_log_mass (K,)``, ``values`` (``{site: (K, ...)}``,
    the locations in the model's space), ``runaway`` (a :class:`Runaway` when ascents did
    not converge and ended above every mode, else None: see :func:`find_modes`) and
    ``start_counts (K,)``, how many converged ascents reached each mode (None for modes not
    found by :func:`find_modes`; :attr:`unseen_chance` reads it). Their masses
    are a :class:`~numpyro_stein_diag.masses.ModeMasses` of their own
    (:func:`~numpyro_stein_diag.masses.mode_masses`).
    """

    location: np.ndarray
    log_density: np.ndarray
    hessian: np.ndarray
    laplace_log_mass: np.ndarray
    values: dict
    runaway: Runaway | None = None  # find_modes: ascents that ran off above every mode (None if none)
    start_counts: np.ndarray | None = None
    degenerate: Degenerate | None = None  # find_modes: ascents that ended at degenerate points

    def __len__(self) -> int:
        return int(self.location.shape[0])

    @property
    def unseen_chance(self) -> float:
        """Good-Turing estimate of the chance that one more start reaches a mode not found
        (:func:`~numpyro_stein_diag.discovery.unseen_chance`); NaN when the counts are not known."""
        known = self.start_counts is not None and np.all(np.asarray(self.start_counts) >= 0)
        return unseen_chance(self.start_counts) if known else float("nan")

    def constrained(self) -> dict:
        """Mode locations in the model's constrained space, ``{site: (K, ...)}``."""
        return self.values

    def describe(self, k: int) -> str:
        """``"mode 1 (mu = [-3, 3])"``: the mode's index and its label (:func:`mode_labels`)."""
        return f"mode {k} ({self.label(k)})"

    def label(self, k: int) -> str:
        """Mode ``k``'s short name (:func:`mode_labels`)."""
        return mode_labels(self)[k]

    def location_text(self, k: int) -> str:
        """``"mu = [-3, 3], sigma = 1.2"``: mode ``k`` in the model's space, 3 significant digits, and
        numbers below a millionth of the site's largest shown as 0 (round-off of an exact 0)."""
        return ", ".join(f"{site} = {format_numbers(v[k])}" for site, v in self.values.items())

    @property
    def laplace_mass(self) -> np.ndarray:
        """Laplace masses as fractions of their sum."""
        return np.exp(self.laplace_log_mass - logsumexp(self.laplace_log_mass))


LABEL_NUMBERS = 4  # a location of at most this many numbers names its mode; a name has at most this many


def mode_labels(modes: Modes) -> list[str]:
    """A short name per mode: its location in the model's space when that is at most
    ``LABEL_NUMBERS`` numbers (``"x = 4"``), else the coordinates that tell the modes apart,
    chosen one at a time (at most ``LABEL_NUMBERS``): each time the coordinate whose values
    differ most, relative to their size, among the modes whose names are still alike
    (``"tau = 0.52, z[3] = 2.1"``)."""
    k = len(modes)
    names, columns = _flat_coordinates(modes.values, k)
    if k == 0 or len(names) <= LABEL_NUMBERS:
        return [modes.location_text(j) for j in range(k)]
    if k == 1:
        return ["the only mode"]
    chosen: list[int] = []
    labels = [""] * k
    while len(chosen) < LABEL_NUMBERS:
        alike = [j for j in range(k) if labels.count(labels[j]) > 1]
        if not alike:
            break
        rows = columns[alike]
        spread = np.ptp(rows, axis=0) / (np.max(np.abs(rows), axis=0) + 1e-12)
        spread[chosen] = -1.0
        chosen.append(int(np.argmax(spread)))
        labels = [", ".join(f"{names[c]} = {format_numbers(columns[j, c])}" for c in chosen) for j in range(k)]
    return labels


def _flat_coordinates(values: dict, k: int) -> tuple[list[str], np.ndarray]:
    """``{site: (K, ...)}`` as coordinate names (``z[3]``, ``L[1,0]``) and a ``(K, n)`` array."""
    names, columns = [], []
    for site, v in values.items():
        v = np.asarray(v, dtype=float)
        for index in np.ndindex(v.shape[1:]):
            names.append(site if not index else f"{site}[{','.join(map(str, index))}]")
            columns.append(v[(slice(None), *index)])
    return names, np.stack(columns, axis=1) if columns else np.zeros((k, 0))


def format_numbers(value) -> str:
    """``4`` not ``4.``, ``[3, 0]`` not ``[3.000e+00, 4.961e-17]``: numbers for people."""
    value = np.asarray(value, dtype=float)
    scale = np.max(np.abs(value)) if value.size else 0.0
    shown = np.where(np.abs(value) < 1e-6 * scale, 0.0, value)
    text = [f"{v:.3g}" for v in shown.ravel()]
    return text[0] if value.ndim == 0 else "[" + ", ".join(text) + "]"


def mode_values_dataset(values: dict) -> xr.Dataset:
    """``{site: (K, ...)}`` mode locations as a Dataset on a ``mode`` dim, the site's other dims
    named as ArviZ names them in a posterior (``<site>_dim_<i>``)."""
    return xr.Dataset(
        {
            k: (("mode",) + tuple(f"{k}_dim_{i}" for i in range(np.ndim(v) - 1)), np.asarray(v))
            for k, v in values.items()
        }
    )


# ---------------------------------------------------------------------------- ascent
ASCENT_CHUNK = 32  # points per compiled ascent call (one compilation); a chunk runs until its slowest ascent ends
STALL_TOLERANCE = 1e-6  # a step that moves no coordinate by more than this (relative to it) has stalled
STALLED_STEPS = 3  # an ascent stops after this many stalled steps in a row
ASCENT_DECREMENT = 1e-3  # an ascent has converged once L-BFGS's Newton decrement is below this (find_modes: 0.05)
ROUNDOFF = 1e-6  # log densities that differ by less than this (relative to 1 + |log p|) are equal
SHORTER_STEPS = 4  # a step that dips in the middle is tried this many times, a quarter as long each time
AT_MODE = 1.0  # Mahalanobis distance within which a point is at a mode (find_modes' default merge_distance)


class Ascent(NamedTuple):
    """Where ascents ended (``ends (n, d)``), their ``log_density (n,)`` there, whether each was
    ``rising`` (its steps ran out before it converged or stalled), its ``gain (n,)``, the log
    density it gained over its last call of :func:`ascend_all`, and the L-BFGS ``steps (n,)`` it
    took in all (each one gradient evaluation, and more where the line search backtracks)."""

    ends: np.ndarray
    log_density: np.ndarray
    rising: np.ndarray
    gain: np.ndarray
    steps: np.ndarray


def _ascend(target: Target, x0, num_iter, mode, hessian):
    """L-BFGS (optax, backtracking line search: under vmap it compiles faster than zoom's) on
    -log density from one start, at most ``num_iter`` steps. Returns the end point, its log
    density, whether the ascent was still rising when its steps ran out, its start's log density
    and the number of steps it took.

    - **Converged**: it stops once L-BFGS's estimate of the Newton decrement,
      :math:`\\hat\\lambda^2 = g^\\top B^{-1} g` (``B`` the L-BFGS Hessian, from at least one
      curvature pair), is below ``ASCENT_DECREMENT``: the distance to the mode in the mode's own
      standard deviations, so a slow ascent far in a heavy tail (tiny gradient, huge ``B^{-1}``)
      goes on and one at a sharp mode stops.
    - **Stalled**: it also stops after ``STALLED_STEPS`` steps in a row that move no coordinate
      ``x_i`` by more than ``STALL_TOLERANCE (1 + |x_i|)`` (in float32 the gradient's round-off
      can keep the decrement above the tolerance at the mode itself).
    - **Never down, never across a dip**: a step after which the log density is lower (the line
      search gave up) is not taken, and neither is one whose midpoint is lower than its start (a
      long step across a low-density valley to a higher point beyond, the line search's Armijo
      test looks at the end only): that one is tried ``SHORTER_STEPS`` times, a quarter as long
      each time. After a step not taken whole L-BFGS goes on with a fresh memory.
    - **Curvature**: a curvature pair with :math:`s^\\top y \\le 0` (the log density is convex
      along the last step, as in a heavy tail far from its mode) would point L-BFGS nowhere and
      cost a failed line search; the memory is cleared instead, so the step is a gradient step.
    - **At its expected mode**: it also stops once within Mahalanobis distance ``AT_MODE`` of
      ``mode`` (in its metric ``hessian``): it is at that mode by :func:`find_modes`' own merge
      rule, and the steps that would refine it (in float32 the last ones cost the most: line
      searches that round-off defeats) would not change its basin. A NaN ``mode`` never stops it.

    A chunk of ascents stops when all have."""

    def loss(x):
        value = -target.log_density(x)
        return jnp.where(jnp.isfinite(value), value, jnp.inf)

    opt = optax.lbfgs(linesearch=optax.scale_by_backtracking_linesearch(max_backtracking_steps=20, store_grad=True))
    value_and_grad = optax.value_and_grad_from_state(loss)
    fresh = opt.init(x0)

    def step(carry):
        i, x, state, stalled, _ = carry
        value, grad = value_and_grad(x, state=state)
        convex = _vdot(x - tree_get(state, "params"), grad - tree_get(state, "updates")) <= 0
        state = _where(convex & (tree_get(state, "count") > 0), fresh, state)
        updates, new_state = opt.update(grad, state, x, value=value, grad=grad, value_fn=loss)
        learning_rate = tree_get(new_state, "learning_rate")
        fraction = _dip_free_fraction(loss, x, value, updates, tree_get(new_state, "value"), learning_rate)
        x_new = jnp.where(fraction > 0.0, x + fraction * updates, x)
        new_state = _where(fraction == 1.0, new_state, fresh)
        # -g . updates = lr g^T B^{-1} g; from a memory of at least one pair, and for a step taken whole
        decrement2 = -_vdot(grad, updates) / learning_rate
        converged = (fraction == 1.0) & (tree_get(state, "count") > 0) & (decrement2 < ASCENT_DECREMENT**2)
        still = jnp.all(jnp.abs(x_new - x) <= STALL_TOLERANCE * (1.0 + jnp.abs(x)))
        at_mode = _vdot(x_new - mode, hessian @ (x_new - mode)) <= AT_MODE**2  # NaN: False
        stalled = jnp.where(converged | at_mode, STALLED_STEPS, jnp.where(still, stalled + 1, 0))
        return i + 1, x_new, new_state, stalled, converged

    def going(carry):
        i, _, _, stalled, _ = carry
        return (i < num_iter) & (stalled < STALLED_STEPS)

    zero = jnp.zeros((), jnp.int32)
    steps, x, _, stalled, _ = jax.lax.while_loop(going, step, (zero, x0, fresh, zero, jnp.zeros((), bool)))
    return x, -loss(x), stalled < STALLED_STEPS, -loss(x0), steps


def _vdot(a, b):
    return jnp.sum(a * b)


def _where(condition, a, b):
    """``a`` where ``condition`` else ``b``, leaf by leaf (optimizer states)."""
    return jax.tree.map(partial(jnp.where, condition), a, b)


def _dip_free_fraction(loss, x, value, updates, end_value, learning_rate):
    """The share of the step ``updates`` from ``x`` (``-log p = value``) to take: 1 when the line
    search found one (``learning_rate > 0``) and its end and its midpoint are no lower than its
    start (the line search saw only the end), else the
    first of 1/4, 1/16, ... (``SHORTER_STEPS`` tries) that is, else 0 (the step is not taken)."""
    floor = value + ROUNDOFF * (1.0 + jnp.abs(value))

    def no_dip(t, end):
        return jnp.isfinite(end) & (end <= floor) & (loss(x + 0.5 * t * updates) <= floor)

    whole = no_dip(1.0, end_value) & jnp.all(jnp.isfinite(updates)) & (learning_rate > 0)
    shorten = jnp.isfinite(end_value) & (end_value <= floor) & ~whole  # the end is higher, the middle lower

    def shorter(carry):
        t, _, tries = carry
        t = 0.25 * t
        return t, no_dip(t, loss(x + t * updates)), tries + 1

    def trying(carry):
        _, ok, tries = carry
        return shorten & ~ok & (tries < SHORTER_STEPS)

    one = jnp.ones((), value.dtype)
    t, ok, _ = jax.lax.while_loop(trying, shorter, (one, whole, jnp.zeros((), jnp.int32)))
    return jnp.where(ok, t, 0.0)


@partial(jax.jit, static_argnums=0)
def _ascend_chunk(target, x0, num_iter, mode, hessian):
    """The ascents of the rows of ``x0`` (row ``i`` expected at ``mode[i]``, ``hessian[i]``), each
    device running its share of them."""
    ascend = jax.vmap(lambda x, m, h: _ascend(target, x, num_iter, m, h))
    return map_rows(ascend, x0.shape[0])(x0, mode, hessian)


def ascend_all(target: Target, x0, num_iter: int, modes: Modes | None = None, expected=None) -> Ascent:
    """Ascend every row of ``x0 (n, d)``, in padded chunks of a fixed size (one compilation).

    With ``modes`` and ``expected (n,)`` (an index into them per row), row ``i``'s ascent stops
    once it is at mode ``expected[i]`` (:func:`_ascend`); without, each goes on until it
    converges, stalls or runs out of steps."""
    x0 = np.asarray(x0)
    if modes is None or expected is None:
        location, hessian = np.full((1, x0.shape[1]), np.nan), np.zeros((1, x0.shape[1], x0.shape[1]))
        expected = np.zeros(len(x0), int)
    else:
        location, hessian = np.asarray(modes.location), np.asarray(modes.hessian)
    location, hessian = location.astype(x0.dtype), hessian.astype(x0.dtype)

    def chunk(x, k):
        return _ascend_chunk(target, x, np.int32(num_iter), location[k], hessian[k])

    ends, log_p, rising, start, steps = map_chunks(chunk, (x0, np.asarray(expected)), ASCENT_CHUNK)
    return Ascent(ends, log_p, rising, log_p - start, steps)


DRAW_CHUNK = 2048  # points per compiled log-density call: masses, repairs and basins share one compilation


@partial(jax.jit, static_argnums=0)
def _log_density_chunk(target, y):
    """``log pi`` at each row of ``y``, each device evaluating its share of the rows."""
    return map_rows(target.log_density, y.shape[0])(y)


def log_densities(target: Target, y) -> np.ndarray:
    """``log pi`` at each row of ``y (n, d)``, in padded chunks of ``DRAW_CHUNK`` rows (one compilation)."""
    return map_chunks(lambda chunk: _log_density_chunk(target, chunk), y, DRAW_CHUNK)


CONTINUE_ROUNDS = 3  # times an ascent still rising when its steps ran out goes on
CONTINUE_FACTOR = 4  # with this many times the steps


def continue_ascents(
    target: Target, ascent: Ascent, which, num_iter: int, modes: Modes | None = None, expected=None
) -> Ascent:
    """``ascent`` with its rows ``which`` gone on from where they stopped for ``CONTINUE_FACTOR *
    num_iter`` more steps (their ``gain`` is then that of the new steps, their ``steps`` all
    they took); ``modes`` and ``expected`` (of every row) as for :func:`ascend_all`."""
    which = np.asarray(which)
    expected = None if expected is None else np.asarray(expected)[which]
    more = ascend_all(target, ascent.ends[which], CONTINUE_FACTOR * num_iter, modes, expected)
    more = more._replace(steps=ascent.steps[which] + more.steps)
    fields = [np.array(field) for field in ascent]
    for field, new in zip(fields, more):
        field[which] = new
    return Ascent(*fields)


def ascend_until_done(target: Target, x0, num_iter: int) -> Ascent:
    """Ascents from every row of ``x0 (n, d)``; those still rising when their ``num_iter`` steps
    ran out (a slow climb from far in a heavy tail, or a density that grows without bound) go
    on, up to ``CONTINUE_ROUNDS`` times with ``CONTINUE_FACTOR`` times the steps, so that a
    slow ascent is not taken for a runaway and one that runs off has shown that it keeps rising."""
    ascent = ascend_all(target, x0, num_iter)
    for _ in range(CONTINUE_ROUNDS):
        if not ascent.rising.any():
            break
        ascent = continue_ascents(target, ascent, np.flatnonzero(ascent.rising), num_iter)
    return ascent


CURVATURE_CHUNK = 32  # points per compiled curvature call (mode candidates, merged modes)


@partial(jax.jit, static_argnums=0)
def _curvature_chunk(target, x):
    """Log density, gradient and Hessian of -log density at the rows of ``x``, split over devices."""

    def rows(x):
        log_p, grad = target.log_density_and_score(x)
        return log_p, grad, -jax.vmap(jax.hessian(target.log_density))(x)

    return map_rows(rows, x.shape[0])(x)


def curvature(target, x) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log density, gradient and Hessian of -log density at each row of ``x (n, d)``, in padded
    chunks of a fixed size (one compilation for every ``n``)."""
    return map_chunks(lambda chunk: _curvature_chunk(target, chunk), x, CURVATURE_CHUNK)


def mahalanobis2(x, location, hessian) -> np.ndarray:
    """:math:`(x - m_k)^T H_k (x - m_k)` for every point and mode, ``(n, K)`` (host side: a few
    products, cheaper than compiling them for every ``n``)."""
    diff = np.asarray(x)[:, None, :] - np.asarray(location)[None, :, :]
    return np.einsum("nkd,kde,nke->nk", diff, np.asarray(hessian), diff, optimize=True)


def find_modes(
    target: Target,
    starts,
    rng_key=None,
    num_prior_starts: int = 32,
    num_iter: int = 200,
    grad_tol: float = 0.05,
    merge_distance: float = 1.0,
    known: Modes | None = None,
) -> Modes:
    """Find the modes of ``target`` by L-BFGS from every row of ``starts (n, d)`` at once.

    With ``known`` (modes an earlier search found), the result is their union with the modes
    these ascents reach: a known mode takes the new ascents that end at it into its
    ``start_counts``, and the search's records (runaway, degenerate points) carry over.

    With ``rng_key``, ``num_prior_starts`` prior draws are added to the starts. An end
    point is a mode when the Hessian ``H`` of ``-log p`` there is positive definite and
    its Newton decrement :math:`\\sqrt{g^T H^{-1} g}` (the distance to the mode in
    posterior standard deviations) is below ``grad_tol``. End points within Mahalanobis
    distance ``merge_distance`` (in a kept mode's Hessian metric) of a higher mode are
    that mode.

    An end point whose Hessian is positive definite but whose eigenvalues span more than
    ``DEGENERATE_CONDITION`` is not a mode either: the density narrows without bound there
    (recorded in ``Modes.degenerate``, a :class:`Degenerate`).

    Ascents still rising when their ``num_iter`` steps run out go on (:func:`ascend_until_done`).
    Those that still gained more than ``RUNAWAY_MARGIN`` over their last round (rising to its end
    or stalled there) at a log density above every mode's ("runaways": the density keeps growing along some direction,
    as in a funnel's neck or an improper posterior) are recorded in ``Modes.runaway`` (a
    :class:`Runaway`: how many, the coordinate they ran along, where it heads and how high the
    density got).

    Raises
    ------
    ValueError
        When no ascent converged, saying what the ascents did instead.
    """
    starts = np.asarray(starts).reshape(-1, target.dim) if starts is not None else np.zeros((0, target.dim))
    if rng_key is not None and num_prior_starts:
        starts = np.concatenate([starts, np.asarray(target.initial_points(rng_key, num_prior_starts))])
    if starts.shape[0] == 0:
        raise ValueError("find_modes needs starting points: pass starts (n, d) or an rng_key for prior draws.")
    ascent = ascend_until_done(target, starts, num_iter)
    ends = ascent.ends
    log_p, grad, hessian = curvature(target, ends)
    finite = np.isfinite(log_p) & np.all(np.isfinite(hessian), axis=(1, 2)) & np.all(np.isfinite(grad), axis=1)
    converged, condition = np.zeros(len(log_p), bool), np.full(len(log_p), np.nan)
    for i in np.flatnonzero(finite):
        eig, vec = np.linalg.eigh(hessian[i])
        if eig[0] > 0:
            condition[i] = eig[-1] / eig[0]
            newton_decrement = np.sqrt(np.sum((vec.T @ grad[i]) ** 2 / eig))
            converged[i] = newton_decrement < grad_tol
    degenerate_at = condition > DEGENERATE_CONDITION  # NaN (not positive definite) compares False
    converged &= ~degenerate_at
    # a degenerate point is where those ascents went, not a place they ran off past
    runaway = find_runaways(target, starts, ascent, log_p, converged | degenerate_at, num_iter, known)
    degenerate = find_degenerate(target, ends, log_p, hessian, degenerate_at)
    x, log_p, hessian = ends[converged], log_p[converged], hessian[converged]
    counts = np.ones(len(x), int)  # converged ascents per candidate
    if known is not None and len(known):  # the union with an earlier search's modes and records
        known_counts = np.ones(len(known), int) if known.start_counts is None else known.start_counts
        earlier = (known.location, known.log_density, known.hessian, known_counts)
        x, log_p, hessian, counts = (np.concatenate(pair) for pair in zip(earlier, (x, log_p, hessian, counts)))
        runaway, degenerate = runaway or known.runaway, degenerate or known.degenerate
    elif not converged.any():
        found = [r.message for r in (runaway, degenerate) if r is not None] or [
            f"none of {len(starts)} L-BFGS runs converged (gradient small, Hessian negative definite); raise "
            "num_iter, pass better starts, or check that the posterior is proper."
        ]
        raise ValueError("no mode found: " + " ".join(found))
    order = np.argsort(-log_p, kind="stable")  # highest first; a known mode leads its group against an equal new one
    groups = [order[g] for g in merge_groups(x[order], hessian[order], merge_distance)]
    keep = [g[0] for g in groups]  # the highest of each
    return replace(
        _make_modes(target, x[keep], log_p[keep], hessian[keep]),
        runaway=runaway,
        start_counts=np.array([int(np.sum(counts[g])) for g in groups]),
        degenerate=degenerate,
    )


def merge_groups(x, hessian, merge_distance: float) -> list[list[int]]:
    """Greedy merge of the points ``x (n, d)`` in the Hessian metric, in their order: each point
    joins the first group whose first point ``m`` (with Hessian ``H``) lies within
    :math:`\\sqrt{(x - m)^T H (x - m)} <` ``merge_distance``, else starts a group of its own.
    Returns the groups as lists of indices, each led by its first point. :func:`find_modes` keeps
    the first point of each (the candidates come highest first, so it keeps the highest and drops
    the other ascents' copies of the same mode); :func:`merge_modes` also sums each group's
    Laplace masses (distinct copies of one canonical mode)."""
    groups: list[list[int]] = []
    for i in range(len(x)):
        leaders = [g[0] for g in groups]
        d2 = mahalanobis2(x[i : i + 1], x[leaders], hessian[leaders])[0] if leaders else np.zeros(0)
        near = np.flatnonzero(d2 < merge_distance**2)
        if near.size:
            groups[near[0]].append(i)
        else:
            groups.append([i])
    return groups


RUNAWAY_MARGIN = 1.0  # nats above the highest mode that an unconverged ascent must reach to count
Space = Literal["model", "unconstrained"]
SPACES: tuple[str, ...] = get_args(Space)


@dataclass(frozen=True)
class Runaway:
    """Ascents that did not converge, were still climbing after ``steps`` steps (each went on
    while it rose, :func:`ascend_until_done`), by more than ``RUNAWAY_MARGIN`` over their last
    ``gain_steps`` steps (or until they stalled there), and ended more than ``RUNAWAY_MARGIN``
    above every mode found: the log density kept growing along some direction.

    ``ran_off`` of ``ascents`` ascents did; ``coordinate`` is the coordinate they moved along
    most (``"tau"``, ``"x[0]"``), read in the model's ``space`` (``"model"``) or, for a site
    whose unconstrained shape differs from its own (simplex, Cholesky factor), as an
    unconstrained coordinate (``"unconstrained"``). ``limit`` is where the coordinate heads
    (``inf``, ``-inf``, or a finite bound such as 0 for a positive site; in unconstrained space
    always ``+-inf``); ``log_density`` the highest log density an ascent reached, ``reached``
    the coordinate's value there (in its ``space``); ``highest_mode`` the highest
    log density of a converged ascent (``-inf`` when none converged); ``gain`` what the highest
    one gained over its last ``gain_steps`` steps. :attr:`message` says it in words.
    """

    ran_off: int
    ascents: int
    coordinate: str
    space: Space
    limit: float
    log_density: float
    reached: float
    highest_mode: float
    steps: int
    gain_steps: int
    gain: float

    def __post_init__(self):
        if self.space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {self.space!r}.")

    @property
    def modes_found(self) -> bool:
        """Whether some ascent converged (to a mode below where the runaways went)."""
        return bool(np.isfinite(self.highest_mode))

    @property
    def message(self) -> str:
        """``"12 of 64 ascents ran off without converging: they were still climbing after 2600 steps
        (the highest gained 40.2 over its last 800), the log density growing as tau -> 0 (it reached
        85.5 at tau = 1.1e-07, above every mode found) ..."``"""
        limit = _limit_text(self.limit)
        if self.space == "model":
            where = (
                f"{self.coordinate} -> {limit} (it reached {self.log_density:.4g} at "
                f"{self.coordinate} = {self.reached:.3g}"
            )
        else:
            where = f"the unconstrained coordinate {self.coordinate} -> {limit} (it reached {self.log_density:.4g}"
        found = self.modes_found
        return (
            f"{self.ran_off} of {self.ascents} ascents ran off without converging: they were still climbing after "
            f"{self.steps} steps (the highest gained {self.gain:.3g} over its last {self.gain_steps}), the log density "
            f"growing as {where}{', above every mode found' if found else ''}). The density grows without bound "
            "there (a funnel's neck, an improper posterior), or a mode lies farther than all these steps went"
            + ("; either way the masses of the modes found are not known." if found else ".")
        )


def find_runaways(
    target: Target, starts, ascent: Ascent, log_p, converged, num_iter: int, known: Modes | None = None
) -> Runaway | None:
    """The ascents from ``starts`` (``ascent``, by :func:`ascend_until_done` with ``num_iter``
    steps) that did not converge, gained more than ``RUNAWAY_MARGIN`` over their last round of
    steps (rising to its end, or until they stalled) and ended more than ``RUNAWAY_MARGIN`` above
    every converged one, and the coordinate they moved along most (None when there are none); see
    :class:`Runaway`. The ``known`` modes of an earlier search count as converged ones."""
    best = np.max(log_p[converged], initial=-np.inf)
    if known is not None and len(known):
        best = max(best, float(np.max(known.log_density)))
    # still gaining over its last round, rising to the end or stalled there (float32's resolution
    # ends a climb into a funnel's neck at tau ~ 1e-7): a slow climb to a far mode gains less
    climbing = ascent.gain > RUNAWAY_MARGIN
    runaway = np.flatnonzero(np.isfinite(log_p) & ~converged & climbing & (log_p > best + RUNAWAY_MARGIN))
    ends = ascent.ends
    if runaway.size == 0:
        return None
    moved = np.abs(ends[runaway] - starts[runaway])
    coordinate = int(np.bincount(np.argmax(moved, axis=1), minlength=target.dim).argmax())
    top = runaway[np.argmax(log_p[runaway])]
    site, index = target.coordinates[coordinate]
    direction = np.sign(ends[top, coordinate] - starts[top, coordinate]) or 1.0
    far = np.array(ends[top], dtype=float)
    far[coordinate] = direction * 1e4  # far enough along the coordinate to read the site's limit
    reached, limit = (target.constrain(np.asarray(p, dtype=ends.dtype)[None])[site][0] for p in (ends[top], far))
    counted = dict(
        ran_off=int(runaway.size),
        ascents=len(log_p),
        coordinate=target.coordinate_names[coordinate],
        log_density=float(log_p[top]),
        highest_mode=float(best),
        steps=num_iter * (1 + CONTINUE_ROUNDS * CONTINUE_FACTOR),
        gain_steps=CONTINUE_FACTOR * num_iter,
        gain=float(ascent.gain[top]),
    )
    if np.shape(reached) == target.unconstrained_shapes[site] and np.size(reached) > 0:  # one value per coordinate
        return Runaway(
            space="model",
            limit=_limit(float(np.asarray(limit)[index])),
            reached=float(np.asarray(reached)[index]),
            **counted,
        )
    # a site whose unconstrained shape differs (simplex, Cholesky factor): the unconstrained coordinate
    return Runaway(
        space="unconstrained", limit=float(direction * np.inf), reached=float(ends[top, coordinate]), **counted
    )


# A Hessian whose eigenvalues span more than this (standard deviations a thousandfold apart) is
# degenerate: the posteriors of the tests and benchmarks stay below 5e3 (a 500-row hierarchy),
# while a funnel's neck reaches 7e6 at 4 dimensions and 4e18 at 10, where float32 ascents no
# longer resolve the soft direction and no Gaussian describes the mass around the point
DEGENERATE_CONDITION = 1e6


@dataclass(frozen=True)
class Degenerate:
    """Ascents that ended where the Hessian ``H`` of ``-log p`` is positive definite but degenerate:
    its largest eigenvalue is more than ``DEGENERATE_CONDITION`` times its smallest. Such a point
    (a funnel's neck, where one scale shrinks without bound as another coordinate moves; the edge
    of a transform) is not a mode: no Laplace approximation, mass or basin is defined there.

    ``count`` of ``ascents`` ascents ended so; at the highest of them (``log_density``) the
    curvature along the coordinate ``stiff`` is ``condition`` times that along ``soft`` (the
    coordinates that weigh most in ``H``'s largest and smallest eigenvectors), and ``location``
    says where it is (``"v = -40.5"``, ``soft``'s value in the model's space when the site has one
    value per coordinate)."""

    count: int
    ascents: int
    stiff: str
    soft: str
    condition: float
    log_density: float
    location: str

    @property
    def message(self) -> str:
        return (
            f"{self.count} of {self.ascents} ascents ended at a degenerate point ({self.location}, log density "
            f"{self.log_density:.4g}), where the curvature along {self.stiff} is {self.condition:.1e} times that "
            f"along {self.soft}: the density narrows without bound there (a funnel's neck, the edge of a "
            "transform), so the point is not a mode, and no mass or basin is defined at it. (A posterior whose "
            "scales differ a thousandfold looks the same: rescale its parameters if that is the cause.)"
        )


def find_degenerate(target: Target, ends, log_p, hessian, degenerate) -> Degenerate | None:
    """The end points marked ``degenerate`` as a :class:`Degenerate` (None when there are none)."""
    if not degenerate.any():
        return None
    top = np.flatnonzero(degenerate)[np.argmax(log_p[degenerate])]
    eig, vec = np.linalg.eigh(hessian[top])
    stiff, soft = (int(np.argmax(np.abs(vec[:, i]))) for i in (-1, 0))
    names = target.coordinate_names
    site, index = target.coordinates[soft]
    value = np.asarray(target.constrain(np.asarray(ends[top : top + 1]))[site][0])
    one_per_coordinate = value.shape == target.unconstrained_shapes[site] and value.size > 0
    shown = float(value[index]) if one_per_coordinate else float(ends[top, soft])
    return Degenerate(
        count=int(degenerate.sum()),
        ascents=len(log_p),
        stiff=names[stiff],
        soft=names[soft],
        condition=float(eig[-1] / eig[0]),
        log_density=float(log_p[top]),
        location=f"{names[soft]} = {shown:.3g}" + ("" if one_per_coordinate else " (unconstrained)"),
    )


LIMIT_INFINITY = 1e3  # a coordinate heading past this (in size) heads to infinity


def _limit(value: float) -> float:
    """Where a coordinate heads: ``value``, or ``+-inf`` when it is not finite or beyond ``LIMIT_INFINITY``."""
    if not np.isfinite(value) or abs(value) >= LIMIT_INFINITY:
        return -np.inf if value < 0 else np.inf
    return value


def _limit_text(value: float) -> str:
    return f"{value:.3g}" if np.isfinite(value) else ("-inf" if value < 0 else "inf")


def no_modes(target: Target) -> Modes:
    """The empty mode set (``K = 0``), for a search that found none."""
    d = target.dim
    return replace(
        _make_modes(target, np.zeros((0, d)), np.zeros(0), np.zeros((0, d, d))), start_counts=np.zeros(0, int)
    )


def _make_modes(target, location, log_density, hessian) -> Modes:
    d = location.shape[1]
    logdet = np.linalg.slogdet(hessian)[1]
    laplace = log_density + 0.5 * d * np.log(2 * np.pi) - 0.5 * logdet
    values = {k: np.asarray(v) for k, v in target.constrain(location).items()}
    return Modes(location, log_density, hessian, laplace, values)


def canonical_points(target: Target, x, canonicalize):
    """Flat points ``(n, d)`` mapped through ``canonicalize`` (one constrained draw -> its canonical
    copy, e.g. mixture components sorted by mean), back in flat unconstrained space."""
    values = target.constrain(x)
    canon = jax.vmap(canonicalize)({k: values[k] for k in target.site_shapes})
    return np.asarray(target.unconstrain({k: canon[k] for k in target.site_shapes}))


def merge_modes(target: Target, modes: Modes, canonicalize, merge_distance: float = 1.0) -> Modes:
    """Canonical modes: every mode mapped through ``canonicalize``, and modes that land on the
    same canonical mode (within ``merge_distance`` in its Hessian metric) merged into one whose
    Laplace mass is their sum; the search's ``runaway`` carries over. Estimate masses afterwards,
    with the same ``canonicalize``."""
    x = canonical_points(target, modes.location, canonicalize)
    _, _, hessian = curvature(target, x)
    groups = merge_groups(x, hessian, merge_distance)
    first = [g[0] for g in groups]
    merged = _make_modes(target, x[first], modes.log_density[first], hessian[first])
    laplace = np.array([logsumexp(modes.laplace_log_mass[g]) for g in groups])
    counts = None if modes.start_counts is None else np.array([np.sum(modes.start_counts[g]) for g in groups])
    return replace(
        merged, laplace_log_mass=laplace, runaway=modes.runaway, start_counts=counts, degenerate=modes.degenerate
    )
