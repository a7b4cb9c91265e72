"""Basins: which mode each point belongs to, by the cheapest means that is right.

A point's basin is the mode its L-BFGS ascent ends at (the nearest mode, in its Hessian metric,
to the end point; none when the end point is far from every mode). An ascent costs tens of
gradient evaluations, so ascending every draw, every importance draw and every repair draw
costs many times the sampler that made them. Most points need no ascent:

- **Clear points.** Around each mode the Laplace approximation
  :math:`\\log p(x) \\approx \\log p(m_k) - \\tfrac12 (x - m_k)^\\top H_k (x - m_k)` says which mode
  explains a point. A point whose best mode under it beats every other by at least
  ``CLEAR_LOG_ODDS`` nats (every point, when there is one mode) is assigned to that mode.
- **Points in doubt are ascended**: those the approximation cannot tell apart, and always the
  ``CHECK_FARTHEST`` points farthest from their mode in its metric (where an unseen mode or a
  heavy tail would show) and ``CHECK_RANDOM`` points at random.
- **The rule checks itself.** If a checked point that the approximation called clear ends at
  another mode, or more than ``LOST_AT_MOST`` (5%) of the random checks end in no basin, the
  approximation is not to be trusted for this posterior and every point is ascended. (A few
  random checks that end nowhere are far tails whose ascents did not finish, as the draws of a
  heavy-tailed mass proposal have: ascending every point would only find more of them. A far
  point that ends in no basin keeps that answer: the far tail is where an unseen mode or a stuck
  ascent shows, and it says nothing about the typical points.) A posterior whose ascents can run off above every mode
  (``modes.runaway``) is always ascended in full.

- **An ascent stops once it is at the mode the guess named** (within Mahalanobis distance
  ``AT_MODE`` = 1, the distance within which :func:`~numpyro_stein_diag.modes.find_modes`
  merges end points into a mode). The last steps to the exact maximum would not change its
  basin, and in float32 they are the dearest (line searches that round-off defeats): on the
  500-row hierarchy of ``bench/bench_diagnose.py`` this halves the checks' cost. An ascent
  from a point the guess placed wrongly never gets there and climbs on to its own mode.

So a unimodal posterior costs ``CHECK_FARTHEST + CHECK_RANDOM`` ascents per point set instead
of one per point. A point in another known mode's basin is either in doubt (ascended) or, if
the guess is wrong for this posterior, caught by a check that sends the whole set to full
ascents; points in an unseen mode's basin are far from every known mode, so they are among
the farthest and keep their "no basin".
"""

from __future__ import annotations

import numpy as np

from .modes import CONTINUE_ROUNDS, Modes, ascend_all, canonical_points, continue_ascents, log_densities, mahalanobis2
from .target import Target

__all__ = ["assign_basins", "reached_directly"]

CLEAR_LOG_ODDS = 10.0  # nats by which the Laplace approximation must prefer a point's mode
CHECK_FARTHEST = 64  # points farthest from their mode that are always ascended
CHECK_RANDOM = 64  # points at random that are always ascended
LOST_AT_MOST = 0.05  # share of the random checks that may end in no basin before every point is ascended
DIP_TOLERANCE = 1.0  # nats below a point's own log density that its straight way to its mode may dip
SEGMENT_POINTS = 8  # points of that way, evenly spaced between the point and the mode, that are looked at
CONTINUE_AT_MOST = 0.1  # share of the points beyond which the unfinished are not slow ascents but another place


def assign_basins(
    target: Target,
    modes: Modes,
    x,
    num_iter: int = 50,
    cutoff: float | None = None,
    canonicalize=None,
    exact: bool = False,
):
    """Basin of each point of ``x (..., d)`` (module docstring): the index of its mode, ``-1`` when
    its ascent ends in no known basin (squared Mahalanobis distance above ``cutoff``, default
    ``max(25, 4 d)``). ``exact=True`` ascends every point until it converges (``num_iter``
    L-BFGS steps, and more for an ascent still rising far from every mode): the reference the
    cheaper rule is measured against (``bench/bench_basins.py``). With ``canonicalize``, points
    are mapped to their canonical copy first."""
    x = np.asarray(x)
    if len(modes) == 0:
        return np.full(x.shape[:-1], -1)
    flat = x.reshape(-1, target.dim)
    if canonicalize is not None:
        flat = canonical_points(target, flat, canonicalize)
    cutoff = max(25.0, 4.0 * target.dim) if cutoff is None else cutoff
    if exact:
        return _ascended(target, modes, flat, num_iter, cutoff).reshape(x.shape[:-1])
    best, clear, far = _laplace_guess(modes, flat)
    if modes.runaway:
        return _ascended(target, modes, flat, num_iter, cutoff, best).reshape(x.shape[:-1])
    farthest = np.zeros(len(flat), bool)
    farthest[np.argsort(-far)[:CHECK_FARTHEST]] = True
    rest = np.flatnonzero(clear & ~farthest)
    random = np.zeros(len(flat), bool)
    random[np.random.default_rng(0).choice(rest, min(CHECK_RANDOM, rest.size), replace=False)] = True
    ascend = ~clear | farthest | random
    basin = best.copy()
    basin[ascend] = _ascended(target, modes, flat[ascend], num_iter, cutoff, best[ascend])
    checked = ascend & clear
    elsewhere = checked & (basin >= 0) & (basin != best)  # the guess named the wrong mode
    # typical points the guess placed that end in no basin: a few are far tails whose ascents did not
    # finish (a heavy-tailed proposal's draws), more than LOST_AT_MOST of them say the guess is no guide
    lost = random & (basin < 0)
    if np.any(elsewhere) or lost.sum() > LOST_AT_MOST * random.sum():
        basin = _ascended(target, modes, flat, num_iter, cutoff, best)
    return basin.reshape(x.shape[:-1])


def reached_directly(target: Target, modes: Modes, x, basins, canonicalize=None) -> np.ndarray:
    """Whether each point of ``x (..., d)`` is certainly in its basin ``basins (...)`` (from
    :func:`assign_basins` with the same ``canonicalize``): the log density on the straight way
    from the point to its mode, at ``SEGMENT_POINTS`` points between them, never falls more than
    ``DIP_TOLERANCE`` below the point's own. A point whose ascent (or guess) took it across a
    low-density valley to a mode on the other side fails this; so does a point on a curved ridge
    of its own mode, which only makes it count for less. A point in no basin is not certain.

    Moves between modes (:func:`~numpyro_stein_diag.check.basin_transitions`) are counted on
    certain points only: one misassigned draw of a chain stuck on one side reads as two moves."""
    x = np.asarray(x)
    flat = x.reshape(-1, target.dim)
    if canonicalize is not None:
        flat = canonical_points(target, flat, canonicalize)
    basins = np.asarray(basins).reshape(-1)
    known = np.flatnonzero(basins >= 0)
    fractions = np.arange(1, SEGMENT_POINTS + 1) / (SEGMENT_POINTS + 1)
    start, end = flat[known], np.asarray(modes.location, flat.dtype)[basins[known]]
    way = start[:, None, :] + fractions[None, :, None] * (end - start)[:, None, :]
    log_p = log_densities(target, np.concatenate([start, way.reshape(-1, target.dim)]).astype(flat.dtype))
    own, along = log_p[: len(known)], log_p[len(known) :].reshape(len(known), SEGMENT_POINTS)
    certain = np.zeros(len(basins), bool)
    certain[known] = np.all(along >= own[:, None] - DIP_TOLERANCE, axis=1)
    return certain.reshape(x.shape[:-1])


def _laplace_guess(modes: Modes, flat) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per point: the mode the Laplace approximation prefers, whether it prefers it by at least
    ``CLEAR_LOG_ODDS``, and the point's squared distance to it in its metric."""
    d2 = mahalanobis2(flat, modes.location, modes.hessian)
    score = np.where(np.isfinite(d2), np.asarray(modes.log_density)[None, :] - 0.5 * d2, -np.inf)
    order = np.argsort(-score, axis=1)
    best = order[:, 0]
    rows = np.arange(len(flat))
    runner_up = score[rows, order[:, 1]] if score.shape[1] > 1 else np.full(len(flat), -np.inf)
    clear = np.isfinite(score[rows, best]) & (score[rows, best] - runner_up >= CLEAR_LOG_ODDS)
    return best, clear, np.where(np.isfinite(d2[rows, best]), d2[rows, best], np.inf)


def _ascended(target: Target, modes: Modes, flat, num_iter: int, cutoff: float, expected=None) -> np.ndarray:
    """Basins by ascent: each point's end point, then the nearest mode in its Hessian metric,
    ``-1`` beyond ``cutoff``. With ``expected`` (each point's Laplace guess), an ascent stops
    as soon as it is at that mode (:func:`~numpyro_stein_diag.modes.ascend_all`): where the
    guess is right it need not climb the last steps, and where it is wrong the ascent goes on
    to where it leads. Without, every ascent climbs until it converges.

    An ascent that ends in no basin while still rising may only be slow (far out in a heavy
    tail, or across a long flat stretch), so it goes on from where it stopped
    (:func:`~numpyro_stein_diag.modes.continue_ascents`, up to ``CONTINUE_ROUNDS`` times); one
    that converged or stalled elsewhere does not. When more than ``CONTINUE_AT_MOST`` of the
    points end in no basin they are not a slow tail but another place (a mode not in
    ``modes``, a ridge along which L-BFGS keeps creeping), and they are left as they are."""
    if len(flat) == 0:
        return np.zeros(0, int)
    ascent = ascend_all(target, flat, num_iter, modes, expected)
    basin = _nearest_mode(modes, ascent.ends, cutoff)
    for _ in range(CONTINUE_ROUNDS):
        unfinished = np.flatnonzero((basin < 0) & ascent.rising)
        if unfinished.size == 0 or unfinished.size > CONTINUE_AT_MOST * len(flat):
            break  # none left, or so many that they lead elsewhere (another mode, a ridge), not slowly here
        ascent = continue_ascents(target, ascent, unfinished, num_iter, modes, expected)
        basin[unfinished] = _nearest_mode(modes, ascent.ends[unfinished], cutoff)
    return basin


def _nearest_mode(modes: Modes, ends, cutoff: float) -> np.ndarray:
    """The mode nearest each end point in its Hessian metric, ``-1`` beyond ``cutoff``."""
    d2 = mahalanobis2(ends, modes.location, modes.hessian)
    d2 = np.where(np.isfinite(d2), d2, np.inf)
    nearest = np.argmin(d2, axis=1)
    return np.where(d2[np.arange(len(nearest)), nearest] <= cutoff, nearest, -1)
