"""Does the log density jump? The score-based checks assume it does not.

The KSD tests, the mode search and the Hessian-based masses see the log density only through
its gradient (and curvature). Where :math:`\\log \\pi` jumps, as along a change point ``tau`` in
``jnp.where(t < tau, e1, e2)``, the gradient is blind to the jumps: the KSD of exact draws is
not zero, ascents climb the smooth parts (the transform's Jacobian) to points that are not
modes, and nothing in those checks says so. This module finds the jumps from the draws.

For a smooth :math:`\\log \\pi` the score integrates to the difference of the log density along
any path; a jump of size :math:`J` that the path crosses leaves a gap of :math:`J`:

.. math::

    \\mathrm{gap} = \\log \\pi(x + \\delta) - \\log \\pi(x)
        - \\int_0^1 \\nabla \\log \\pi(x + t \\delta) \\cdot \\delta \\, dt.

The integral is ``QUADRATURE_NODES``-point Gauss-Legendre quadrature, exact for polynomials of
degree ``2 n - 1`` and geometrically accurate for analytic integrands, so a smooth density,
however curved (a funnel's neck, a heavy tail), leaves a gap at round-off level. The moves
:math:`\\delta` are short (``STEP`` of the draws' standard deviation per coordinate, in a
random direction), so that they stay within a mode: a move across the valley between two far
modes would meet a near-kink that quadrature does not resolve. Each move is made one site at a
time (a path of legs, one per site), so the gaps of its legs add up to the gap of the move and
each jump is put on the site whose leg crossed it.

A gap counts when it stays when the integral is taken again on ``REFINED_PIECES`` parts of the
leg (within ``AGREEMENT``): refining cannot remove a jump, while it removes the quadrature error
at a sharp bend of a smooth log density, as where the valley between two modes 12 sd apart
turns the score around within a sixth of a unit. A site is *non-smooth* when at least
``MIN_JUMPS`` of the moves of its leg (and at least ``MIN_JUMP_SHARE`` of them) leave such a gap
above ``JUMP_NATS`` plus the round-off of the log densities' values (``100 eps |log pi|``).
Exact draws of a change-point posterior (100 yearly counts) cross a jump on about half of their
moves of ``tau``; a smooth posterior leaves no gap at all. The check costs
``NUM_MOVES * (sites * (1 + REFINED_PIECES) * QUADRATURE_NODES + sites + 1)`` evaluations, about
8000 for three sites: a few percent of a NUTS run.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from .host import numpy_rng
from .target import Target

__all__ = ["Jumps", "find_jumps"]

NUM_MOVES = 128  # draws moved (thinned evenly from the draws given)
STEP = 0.25  # a move's length per coordinate, in the draws' standard deviations
QUADRATURE_NODES = 4
JUMP_NATS = 0.1  # a gap above this (plus round-off) is a jump
MIN_JUMPS = 3  # a site jumps when at least this many of its legs crossed a jump
MIN_JUMP_SHARE = 0.01  # and at least this share of them
REFINED_PIECES = 4  # the leg's integral again, on this many parts: a jump's gap does not change
AGREEMENT = 0.25  # relative change of the gap below which it did not
MOVE_CHUNK = 64  # moves evaluated at a time


@dataclass(frozen=True)
class Jumps:
    """The sites along which the log density jumps (:func:`find_jumps`): ``sites`` (names, in
    the model's order), per site the share of moves whose leg along it crossed a jump
    (``share``) and the largest gap (``largest``, nats), out of ``moves`` moves."""

    sites: tuple[str, ...]
    share: tuple[float, ...]
    largest: tuple[float, ...]
    moves: int

    def __bool__(self) -> bool:
        return bool(self.sites)

    @property
    def message(self) -> str:
        """``"the log density jumps along tau (31% of 256 short moves of tau crossed a jump, of up to
        4.2 nats)"``, and what that means for the checks."""
        where = "; ".join(
            f"{site} ({share:.0%} of {self.moves} short moves of {site} crossed a jump, of up to {largest:.3g} nats)"
            for site, share, largest in zip(self.sites, self.share, self.largest)
        )
        return (
            f"the log density jumps along {where}. The gradient does not see jumps, so the checks built on it "
            "do not apply to this posterior: the KSD tests, the mode search and the mode masses were not run, "
            "and no flag is raised. A change point or threshold on a latent makes such jumps; sum the "
            "likelihood over the intervals it can fall in (logsumexp over them in a numpyro.factor, or a "
            "discrete site marginalised by enumeration) and the rest of the posterior is smooth, so every "
            "check applies to it."
        )


def find_jumps(target: Target, draws, rng_key, num_moves: int = NUM_MOVES) -> Jumps:
    """The sites along which ``log pi`` jumps, judged from short moves away from ``draws (n, d)``
    (module docstring)."""
    draws = np.asarray(draws, float).reshape(-1, target.dim)
    sites = list(target.site_shapes)
    if len(draws) == 0:
        return Jumps((), (), (), 0)
    start = draws[np.linspace(0, len(draws) - 1, min(num_moves, len(draws))).astype(int)]
    scale = np.std(draws, axis=0)
    direction = numpy_rng(rng_key).standard_normal(start.shape) * STEP * scale
    site_of = np.array([sites.index(site) for site, _ in target.coordinates])
    legs = np.stack([direction * (site_of == s) for s in range(len(sites))], axis=1)  # (n, sites, d)
    corners = start[:, None, :] + np.concatenate([np.zeros_like(legs[:, :1]), np.cumsum(legs, axis=1)], axis=1)
    gaps, tolerance = _leg_gaps(target, corners.astype(jnp.result_type(float)))
    jumped = np.abs(gaps) > tolerance  # (n, sites); NaN gaps (a leg into -inf) are not jumps
    counts = jumped.sum(axis=0)
    jumping = [s for s in range(len(sites)) if counts[s] >= max(MIN_JUMPS, MIN_JUMP_SHARE * len(start))]
    return Jumps(
        sites=tuple(sites[s] for s in jumping),
        share=tuple(float(counts[s] / len(start)) for s in jumping),
        largest=tuple(float(np.nanmax(np.where(jumped[:, s], np.abs(gaps[:, s]), np.nan))) for s in jumping),
        moves=len(start),
    )


def _leg_gaps(target: Target, corners) -> tuple[np.ndarray, np.ndarray]:
    """The gap of each leg between consecutive ``corners (n, legs + 1, d)`` and its round-off
    tolerance, both ``(n, legs)``, ``MOVE_CHUNK`` moves at a time (host side: the model is
    evaluated by :meth:`~numpyro_stein_diag.target.Target.log_density_and_score_rows`, whose
    one compilation the KSD tests share)."""
    gaps = [_gaps(target, corners[i : i + MOVE_CHUNK]) for i in range(0, len(corners), MOVE_CHUNK)]
    return tuple(np.concatenate(parts) for parts in zip(*gaps))


def _composite_rule(pieces: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights on [0, 1] of ``QUADRATURE_NODES``-point Gauss-Legendre on each of ``pieces`` equal parts."""
    nodes, weights = np.polynomial.legendre.leggauss(QUADRATURE_NODES)
    t = (np.arange(pieces)[:, None] + 0.5 * (nodes + 1.0)) / pieces
    return t.ravel(), np.tile(0.5 * weights / pieces, pieces)


def _gaps(target: Target, corners) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_leg_gaps` for one chunk of moves."""
    n, num_corners, d = corners.shape
    a, step = corners[:, :-1], np.diff(corners, axis=1)
    (coarse_t, coarse_w), (fine_t, fine_w) = _composite_rule(1), _composite_rule(REFINED_PIECES)
    t = np.concatenate([coarse_t, fine_t]).astype(corners.dtype)
    points = a[..., None, :] + t[:, None] * step[..., None, :]  # (n, legs, nodes of both rules, d)
    # one batch of the model's value and gradient: the corners' log densities, the nodes' scores
    log_p, scores = target.log_density_and_score_rows(np.concatenate([corners.reshape(-1, d), points.reshape(-1, d)]))
    log_p = log_p[: n * num_corners].reshape(n, num_corners)
    along = np.sum(scores[n * num_corners :].reshape(points.shape) * step[..., None, :], axis=-1)  # score . step
    with np.errstate(invalid="ignore"):  # a leg into -inf: NaN, not a jump
        change = log_p[:, 1:] - log_p[:, :-1]
        coarse = change - along[..., : len(coarse_t)] @ coarse_w.astype(corners.dtype)
        fine = change - along[..., len(coarse_t) :] @ fine_w.astype(corners.dtype)
        # a jump leaves the same gap however finely the smooth part is integrated; a sharp bend of a
        # smooth log density (the valley between two modes) leaves a gap that refining removes
        stable = np.abs(coarse - fine) <= AGREEMENT * np.abs(fine)
    roundoff = 100 * np.finfo(corners.dtype).eps * (np.abs(log_p[:, 1:]) + np.abs(log_p[:, :-1]))
    return np.where(np.isfinite(fine) & stable, fine, 0.0), JUMP_NATS + roundoff
