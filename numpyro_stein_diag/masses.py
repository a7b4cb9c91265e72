"""Mode masses: the posterior mass of each mode's basin, by bridge sampling from the draws in it,
or by importance sampling around the modes.

**Bridge sampling** (when the methods' draws are given, ``mass_method = "bridge"``). The mass of a
basin ``B_k`` (the points whose ascent ends at mode ``k``,
:func:`~numpyro_stein_diag.basins.assign_basins`, the one assignment path for every point set
here) is :math:`Z_k = \\int_{B_k} \\pi`, the normalising constant of the restricted density
:math:`\\pi_k(x) = \\pi(x) 1[x \\in B_k]`. Its draws are the methods' draws that fall in
``B_k`` (each chain's in-basin draws, in order). Half of each chain fits a proposal
:math:`g_k` (an even mixture of two Student-t components, one at the mode with its curvature and
one at the draws' mean with the curvature there, each scaled and given tails by the draws:
:func:`~numpyro_stein_diag.bridge.fit_proposal`); the other half and ``num_draws`` draws of
:math:`g_k` (their basins by ``assign_basins``) give Meng & Wong's optimal bridge estimate
:math:`\\hat Z_k` and its relative error :math:`\\mathrm{RE}^2_k \\approx \\mathrm{Var} \\log \\hat Z_k`
(Frühwirth-Schnatter 2004, with the draws' ESS along their chains:
:mod:`~numpyro_stein_diag.bridge`). Proposal draws in no known basin estimate the mass outside
every basin, :math:`\\hat Z_0`, by importance sampling from the proposals' mixture. Then

.. math::

    \\hat M_k = \\frac{\\hat Z_k}{\\hat Z_0 + \\sum_j \\hat Z_j}, \\qquad
    \\widehat{\\mathrm{se}}_k^2 = \\hat M_k^2 \\Bigl[(1 - \\hat M_k)^2\\, \\mathrm{RE}^2_k
        + \\sum_{j \\ne k} \\hat M_j^2\\, \\mathrm{RE}^2_j\\Bigr]

(the delta method; the :math:`\\hat Z_k` are independent, each from its own draws). The bridge
needs no proposal with heavier tails than the basin (its terms are bounded), so it holds where
importance sampling from the modes fails: a multivariate t mode at d = 50, a 100-dimensional
hierarchy. ``pareto_k`` is then the largest Pareto :math:`\\hat k` of the proposal-side weights
:math:`\\pi_k / g_k`, a diagnostic of how well each proposal covers its basin.

A basin with fewer than ``MIN_BASIN_DRAWS`` draws (a mode the methods missed) has no draws to
fit or bridge with. Its :math:`Z_k` is estimated by importance sampling from the mode's own
:math:`t_\\nu(m_k, s^2 H_k^{-1})`, :math:`\\hat Z_k = \\frac1N \\sum_i \\pi(y_i) / g_k(y_i)\\, 1[y_i \\in B_k]`,
and only when those weights' Pareto :math:`\\hat k` exceeds 0.7 is the basin sampled by short
NUTS chains from its mode for a bridge of its own (a run's worth of work, where importance
sampling costs one batch of log densities and one assignment). Either sees the basin only as
far as the mode's surroundings reach: a broad base under a sharp peak that no draw reached is
underweighted with a low :math:`\\hat k` (0.25-0.30 for 0.40 at d = 8), and NUTS chains from
the mode stay on the peak and give the same answer.

**Importance sampling** (without draws, with ``canonicalize``, or when the bridge cannot be
made). The basin masses are estimated by importance sampling from a
defensive mixture of multivariate Student-t distributions centred at the modes,
:math:`q = \\sum_k a_k\\, t_\\nu(m_k, c H_k^{-1})`, with the balance-heuristic weights
:math:`w = \\pi(y) / q(y)` and every draw credited to the basin it ascends into:

.. math::

    \\hat M_k = \\frac{\\sum_i w_i 1[y_i \\in B_k]}{\\sum_i w_i}, \\qquad
    \\widehat{\\mathrm{se}}_k^2 = \\frac{\\sum_i w_i^2 (1[y_i \\in B_k] - \\hat M_k)^2}{(\\sum_i w_i)^2}.

Because :math:`\\pi` includes the log-Jacobian, these are the masses in the model's space.
The weights are Pareto-smoothed (PSIS, from arviz-stats) before they enter these sums, and
their Pareto :math:`\\hat k` says when not to trust them (:math:`\\hat k > 0.7`); the Laplace
masses (:attr:`~numpyro_stein_diag.modes.Modes.laplace_mass`) are then the fallback and
always a cross-check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple, get_args

import jax.numpy as jnp
import numpy as np
from arviz_stats.base import array_stats
from numpyro.infer import MCMC, NUTS
from scipy.linalg import solve_triangular
from scipy.special import gammaln, logsumexp

from .basins import assign_basins
from .bridge import BridgeEstimate, Proposal, bridge_log_marginal, fit_proposal
from .host import numpy_rng, split_keys
from .modes import Modes, curvature, log_densities
from .target import Target

__all__ = ["ModeMasses", "MassMethod", "mode_masses"]

PARETO_K_LIMIT = 0.7
PROPOSAL_DF = 5.0  # Student-t degrees of freedom of the importance proposal
PROPOSAL_SCALE = 1.5  # its covariance is PROPOSAL_SCALE^2 H^{-1} at each mode
MassMethod = Literal["bridge", "importance", "laplace", "none"]
MASS_METHODS: tuple[str, ...] = get_args(MassMethod)


@dataclass(frozen=True, eq=False)
class ModeMasses:
    """The masses of K modes' basins (:func:`mode_masses`), in the order of the modes.

    ``mass`` and ``mass_se`` ``(K,)``, the Pareto :math:`\\hat k` of the importance weights
    (``pareto_k``), ``unknown_mass`` (the share of the mass that lies in no known basin, from
    the proposal draws that landed in none), ``mass_method`` (one of :data:`MASS_METHODS`:
    ``"bridge"`` from the methods' draws, ``"importance"`` without them, ``"laplace"`` when the
    importance weights were not trusted, or ``"none"`` when the masses could not be estimated
    and are NaN) and ``fallback``, why the bridge was not used when draws were given (``""``
    otherwise). ``unseen_starts`` are up to ``UNSEEN_STARTS`` of the proposal draws that landed
    in no known basin, the highest first: where an unseen mode would show, so the search goes on
    from them. ``pools`` are the bridge's weighted proposal draws of each basin (:class:`BasinPool`),
    from which the repair fills a basin. Both are working data, not kept in a report.
    """

    mass: np.ndarray
    mass_se: np.ndarray
    pareto_k: float
    unknown_mass: float
    mass_method: MassMethod
    fallback: str = ""
    unseen_starts: np.ndarray | None = field(default=None, repr=False)
    pools: tuple[BasinPool, ...] | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.mass_method not in MASS_METHODS:
            raise ValueError(f"mass_method must be one of {MASS_METHODS}, got {self.mass_method!r}.")
        if np.shape(self.mass) != np.shape(self.mass_se) or np.ndim(self.mass) != 1:
            raise ValueError(
                f"mass and mass_se must be (K,) arrays of one length, got shapes "
                f"{np.shape(self.mass)} and {np.shape(self.mass_se)}."
            )

    def __len__(self) -> int:
        return len(self.mass)

    @property
    def estimated(self) -> bool:
        """Whether the masses were estimated (``mass_method`` is not ``"none"``)."""
        return self.mass_method != "none"


def _precision_roots(modes: Modes, scale: float) -> np.ndarray:
    """Lower-triangular :math:`R_k` with :math:`R_k R_k^\\top = H_k / s^2`, the precision of the
    proposal's component ``k`` (its covariance is :math:`s^2 H_k^{-1}`), ``(K, d, d)``."""
    hessian = np.asarray(modes.hessian, float)
    hessian = 0.5 * (hessian + np.swapaxes(hessian, 1, 2))
    try:
        return np.linalg.cholesky(hessian) / scale
    except np.linalg.LinAlgError:
        k = int(np.argmin([np.linalg.eigvalsh(h)[0] for h in hessian]))  # the least positive one
        raise ValueError(
            f"the Hessian of -log p at {modes.describe(k)} is not positive definite, so it is not a mode "
            "and no proposal can be centred there; pass modes from find_modes."
        ) from None


def _log_proposal(y, loc, roots, weights, df):
    """:math:`\\log q(y) = \\log \\sum_k a_k t_{\\nu_k}(y; m_k, (R_k R_k^\\top)^{-1})` at each row of
    ``y (n, d)``, on the host (float64), with ``df`` one :math:`\\nu` for all components or one per component and

    .. math::

        \\log t_\\nu(y; m, (R R^\\top)^{-1}) = \\log\\Gamma(\\tfrac{\\nu + d}{2}) - \\log\\Gamma(\\tfrac{\\nu}{2})
            - \\tfrac{d}{2} \\log(\\nu\\pi) + \\log\\det R - \\tfrac{\\nu + d}{2}
            \\log\\bigl(1 + \\|R^\\top (y - m)\\|^2 / \\nu\\bigr).
    """
    d = y.shape[1]
    df = np.broadcast_to(np.asarray(df, float), (len(loc),))
    const = gammaln((df + d) / 2) - gammaln(df / 2) - 0.5 * d * np.log(df * np.pi)
    with np.errstate(divide="ignore"):  # a weight of 0 (the repair's one-mode proposal) is log 0 = -inf
        log_a = np.log(weights)
    per_mode = [
        log_a[k]
        + const[k]
        + np.sum(np.log(np.diag(roots[k])))
        - 0.5 * (df[k] + d) * np.log1p(np.sum(((y - loc[k]) @ roots[k]) ** 2, axis=1) / df[k])
        for k in range(len(loc))
    ]
    return logsumexp(np.stack(per_mode, axis=1), axis=1)


def _t_mixture_draws(rng: np.random.Generator, loc, roots, weights, df, num_draws: int) -> np.ndarray:
    """``num_draws`` draws ``(n, d)`` (float64) from :math:`\\sum_k a_k t_{\\nu_k}(m_k, (R_k R_k^\\top)^{-1})`:
    :math:`m_c + R_c^{-\\top} z / \\sqrt{g}` with :math:`c \\sim a`, :math:`z \\sim N(0, I)`,
    :math:`g \\sim \\chi^2_{\\nu_c} / \\nu_c` (``df`` one for all components or one per component)."""
    df = np.broadcast_to(np.asarray(df, float), (len(loc),))
    comp = rng.choice(len(weights), num_draws, p=weights / weights.sum())
    z = rng.standard_normal((num_draws, loc.shape[1]))
    g = rng.chisquare(df[comp]) / df[comp]
    y = np.empty_like(z)
    for k in np.unique(comp):  # one product per mode, not an (n, d, d) stack of factors
        rows = comp == k
        y[rows] = loc[k] + solve_triangular(roots[k].T, z[rows].T, lower=False).T / np.sqrt(g[rows])[:, None]
    return y


def psis_weights(log_w):
    """Pareto-smoothed importance weights (Vehtari et al. 2024) and their :math:`\\hat k`, from arviz-stats.

    ``log_w`` may hold ``-inf`` (weight 0: the target is not finite there); the largest
    finite weights are replaced by quantiles of the generalised Pareto fit to their tail,
    which bounds the variance a few huge weights would add. Returns weights normalised to
    sum 1 (the zero weights stay 0) and :math:`\\hat k` (above 0.7: do not trust them).
    """
    log_w = np.asarray(log_w, dtype=float)
    finite = np.isfinite(log_w)
    w = np.zeros_like(log_w)
    if not finite.any():
        return w, np.inf
    # arviz-stats' psislw smooths the log weights -ary (it is built for LOO's -log likelihood)
    smoothed, khat = array_stats.psislw(-log_w[finite])
    w[finite] = np.exp(smoothed - logsumexp(smoothed))
    return w, float(khat)


def modes_proposal(modes: Modes, weights, df: float = PROPOSAL_DF, scale: float = PROPOSAL_SCALE) -> Proposal:
    """The mode mixture :math:`q = \\sum_k a_k t_\\nu(m_k, s^2 H_k^{-1})` (``weights`` = :math:`a`, a
    weight may be 0), with precision roots :math:`R_k R_k^\\top = H_k / s^2`."""
    return Proposal(
        location=np.asarray(modes.location, float),
        roots=_precision_roots(modes, scale),
        df=np.full(len(modes), float(df)),
        weights=np.asarray(weights, float),
    )


def sample_proposal(target: Target, proposal: Proposal, rng_key, num: int) -> tuple[np.ndarray, np.ndarray]:
    """``num`` draws ``y (num, d)`` of ``proposal`` (in the target's float type) and their log
    importance weights :math:`\\log \\pi(y) - \\log g(y)` (``-inf`` where the target is not finite).

    The draws (:func:`_t_mixture_draws`) and :math:`\\log g` are made on the host
    (:func:`~numpyro_stein_diag.host.numpy_rng`); only the target's log density is compiled
    (:func:`~numpyro_stein_diag.modes.log_densities`)."""
    y = _t_mixture_draws(numpy_rng(rng_key), *_mixture(proposal), num).astype(jnp.result_type(float))
    log_pi = log_densities(target, y)
    return y, np.where(np.isfinite(log_pi), log_pi - _log_fitted(proposal, y.astype(float)), -np.inf)


def without_masses(num_modes: int) -> ModeMasses:
    """The masses of ``num_modes`` modes marked as not estimated: NaN, ``mass_method = "none"``."""
    nan = np.full(num_modes, np.nan)
    return ModeMasses(mass=nan, mass_se=nan, pareto_k=np.nan, unknown_mass=np.nan, mass_method="none")


def mode_masses(
    target: Target,
    modes: Modes,
    rng_key,
    num_draws: int = 2000,
    df: float = PROPOSAL_DF,
    scale: float = PROPOSAL_SCALE,
    basin_iter: int = 50,
    canonicalize=None,
    draws=None,
    draw_basins=None,
) -> ModeMasses:
    """Estimate each mode's posterior mass: a :class:`ModeMasses` (``mass``, ``mass_se``, ``pareto_k``, ...).

    With ``draws`` (the methods' draws: an array ``(chain, draw, d)`` or ``(n, d)``, or a list of
    such arrays), each basin's mass is estimated by bridge sampling from the draws in it
    (:func:`bridge_masses`, ``mass_method = "bridge"``), ``num_draws`` proposal draws per mode;
    where that cannot be done (a basin whose draws cannot be made, a proposal that never lands in
    its basin), by importance sampling as without ``draws``. ``draw_basins`` are the draws' basins
    (:func:`~numpyro_stein_diag.basins.assign_basins`, arrays of the draws' shapes without ``d``)
    when they are known, so that no draw is assigned twice. With ``canonicalize`` the draws are
    not used: a basin then holds every relabelled copy of its mode, which one fitted proposal
    cannot cover.

    Without ``draws``, ``num_draws`` per mode are drawn from the defensive Student-t mixture (``df``
    degrees of freedom, covariance ``scale^2 H^{-1}``; component weights half
    Laplace masses, half uniform). When the Pareto :math:`\\hat k` exceeds 0.7 the
    importance estimate is not trusted and the Laplace masses are used instead
    (``mass_method = "laplace"``, ``mass_se`` then the absolute gap between the two).
    With ``canonicalize`` (and canonical ``modes`` from :func:`merge_modes`) each draw is
    credited to the basin of its canonical copy; for a posterior invariant under the
    relabelling this estimates the canonical modes' masses from the proposal around them.

    An estimate from importance weights of effective size :math:`\\mathrm{ESS}_w = 1 / \\sum w_i^2`
    cannot resolve a mass finer than :math:`1 / \\mathrm{ESS}_w` (a basin no draw reached may
    still hold about that much), so each ``mass_se`` is at least that: no share is ever judged
    against a standard error of 0. When ``modes.runaway`` says the log density grows above
    every mode, no mode holds a known share: the masses are NaN (``mass_method = "none"``).
    """
    k = len(modes)
    if modes.runaway is not None or k == 0:
        return without_masses(k)
    fallback = ""
    if draws is not None and canonicalize is None:
        k_bridge, rng_key = split_keys(rng_key)
        try:
            chains = _as_chains(draws, target.dim)
            chain_basins = None if draw_basins is None else _as_chain_basins(draw_basins, chains)
            return bridge_masses(target, modes, chains, k_bridge, num_draws, basin_iter, chain_basins)
        except BridgeUnavailable as err:
            fallback = f"no bridge: {err}"  # the importance estimate below
    elif draws is not None:
        fallback = "no bridge with canonicalize: one fitted proposal cannot cover a mode's relabelled copies"
    weights = 0.5 * modes.laplace_mass + 0.5 / k
    y, log_w = sample_proposal(target, modes_proposal(modes, weights, df, scale), rng_key, num_draws * k)
    basins = assign_basins(target, modes, y, num_iter=basin_iter, canonicalize=canonicalize)
    w, khat = psis_weights(log_w)  # normalised: sum w = 1
    mass = np.array([w[basins == j].sum() for j in range(k)])
    indicator = basins[None, :] == np.arange(k)[:, None]
    se = np.sqrt(np.sum(w[None, :] ** 2 * (indicator - mass[:, None]) ** 2, axis=1))
    resolution = np.sum(w**2)  # 1 / ESS of the weights
    se = np.maximum(se, resolution)
    unknown = float(w[basins < 0].sum())
    found = dict(pareto_k=khat, unknown_mass=unknown, fallback=fallback, unseen_starts=unseen_starts(y, basins, log_w))
    if not np.isfinite(khat) or khat > PARETO_K_LIMIT:
        laplace = modes.laplace_mass
        return ModeMasses(
            mass=laplace, mass_se=np.maximum(np.abs(laplace - mass), resolution), mass_method="laplace", **found
        )
    return ModeMasses(mass=mass, mass_se=se, mass_method="importance", **found)


UNSEEN_STARTS = 64  # proposal draws in no known basin that the search goes on from


def unseen_starts(y, basins, log_density) -> np.ndarray:
    """Up to ``UNSEEN_STARTS`` rows of ``y`` in no known basin (``basins < 0``), highest ``log_density`` first."""
    outside = np.flatnonzero(np.asarray(basins) < 0)
    return np.asarray(y)[outside[np.argsort(-np.asarray(log_density)[outside])[:UNSEEN_STARTS]]]


# ---------------------------------------------------------------------------- bridge sampling per basin
MIN_BASIN_DRAWS = 200  # a basin with fewer draws than this is estimated by importance sampling from its mode
TOP_UP_CHAINS = 4  # chains per basin whose importance weights are not to be trusted
TOP_UP_WARMUP = 200
TOP_UP_SAMPLES = 100  # per chain
MIN_FIT_DRAWS = 20  # fewer draws than this in a basin (after the top-up) fit no proposal
IMPORTANCE_DRAWS = 2  # times num_draws drawn for a basin weighed by importance sampling


class BridgeUnavailable(Exception):
    """The bridge cannot estimate a basin's mass (too few draws in it, no proposal draw in it)."""


@dataclass(frozen=True, eq=False)
class BasinPool:
    """Weighted draws of one basin's restricted posterior :math:`\\pi 1[B_k]`: draws ``y (n, d)`` of
    the ``proposal`` :math:`g_k` and their log weights :math:`\\log \\pi(y) - \\log g_k(y)`, ``-inf``
    outside the basin (and where the ratio is too small to have been given a basin). The mass
    estimate made them; the repair resamples its fill-in from them and draws more of ``proposal``
    when it needs more (:func:`~numpyro_stein_diag.repair.restricted_draws`)."""

    proposal: Proposal
    y: np.ndarray
    log_weight: np.ndarray

    @classmethod
    def empty(cls, proposal: Proposal) -> BasinPool:
        """A pool of ``proposal`` with no draws yet."""
        return cls(proposal, np.zeros((0, proposal.location.shape[1])), np.zeros(0))


def _as_chains(draws, dim: int) -> list[np.ndarray]:
    """``draws`` (an array ``(chain, draw, d)`` or ``(n, d)``, or a list of them) as a list of chains ``(n, d)``."""
    arrays = list(draws) if isinstance(draws, list | tuple) else [draws]
    chains = []
    for a in arrays:
        a = np.asarray(a, float)
        if a.ndim not in (2, 3) or a.shape[-1] != dim:
            raise ValueError(
                f"draws must be (chain, draw, {dim}) or (n, {dim}) arrays (unconstrained, like Run.draws); "
                f"got shape {a.shape}."
            )
        chains.extend(a if a.ndim == 3 else [a])
    return chains


def _as_chain_basins(draw_basins, chains: list[np.ndarray]) -> list[np.ndarray]:
    """``draw_basins`` (arrays of the draws' shapes without ``d``) as one ``(n,)`` array per chain of ``chains``."""
    arrays = list(draw_basins) if isinstance(draw_basins, list | tuple) else [draw_basins]
    basins = [c[:, 0].astype(int) for c in _as_chains([np.asarray(b)[..., None] for b in arrays], 1)]
    if [len(b) for b in basins] != [len(c) for c in chains]:
        raise ValueError("draw_basins must hold one basin per draw, in the shapes of draws without their last axis.")
    return basins


def _basins_of_chains(target: Target, modes: Modes, chains: list[np.ndarray], num_iter: int) -> list[np.ndarray]:
    """The basin of every draw of every chain, by one :func:`~numpyro_stein_diag.basins.assign_basins` call."""
    if not chains:
        return []
    flat = assign_basins(target, modes, np.concatenate(chains), num_iter=num_iter)
    return np.split(flat, np.cumsum([len(c) for c in chains])[:-1])


def _chains_per_basin(chains, basins, num_modes: int) -> list[list[np.ndarray]]:
    """Per mode, each chain's draws in its basin (in order)."""
    per_basin: list[list[np.ndarray]] = [[] for _ in range(num_modes)]
    for chain, basin in zip(chains, basins):
        for k in np.unique(basin[basin >= 0]):
            per_basin[k].append(chain[basin == k])
    return per_basin


def _top_up(target: Target, modes: Modes, needy: list[int], rng_key) -> list[np.ndarray]:
    """``TOP_UP_CHAINS`` short NUTS chains (numpyro, vectorised, ``TOP_UP_WARMUP`` warm-up and
    ``TOP_UP_SAMPLES`` draws each) started at each mode in ``needy``: ``(chain, draw, d)`` per mode."""
    start = np.repeat(np.asarray(modes.location, float)[needy], TOP_UP_CHAINS, axis=0)
    mcmc = MCMC(
        NUTS(potential_fn=lambda z: -target.log_density(z)),
        num_warmup=TOP_UP_WARMUP,
        num_samples=TOP_UP_SAMPLES,
        num_chains=len(start),
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(rng_key, init_params=jnp.asarray(start, jnp.result_type(float)))
    x = np.asarray(mcmc.get_samples(group_by_chain=True), float)
    return list(x.reshape(len(needy), TOP_UP_CHAINS, TOP_UP_SAMPLES, target.dim))


def _topped_up(target, modes, needy: list[int], rng_key, num_iter) -> list[list[np.ndarray]]:
    """Per mode in ``needy``, short NUTS chains from it (:func:`_top_up`), each cut where it first
    leaves the mode's basin."""
    added = _top_up(target, modes, needy, rng_key)
    basins = _basins_of_chains(target, modes, [c for x in added for c in x], num_iter)
    cut = []
    for i, k in enumerate(needy):
        chains = []
        for chain, basin in zip(added[i], basins[i * TOP_UP_CHAINS : (i + 1) * TOP_UP_CHAINS]):
            left = np.flatnonzero(basin != k)
            chains.append(chain[: left[0] if left.size else len(chain)])
        cut.append(chains)
    return cut


def _log_density_rows(target: Target, x) -> np.ndarray:
    """``log pi`` at each row of ``x (n, d)``, float64 on the host."""
    return np.asarray(log_densities(target, np.asarray(x, jnp.result_type(float))), float)


class _Source(NamedTuple):
    """How one basin's mass is estimated: draws of its ``proposal``, and with ``l1`` (the log ratios
    :math:`\\log \\pi - \\log g` of the basin's own draws, one array per chain) by the bridge,
    without (``[]``) by importance sampling."""

    proposal: Proposal
    l1: list[np.ndarray]


def _sources(target: Target, modes: Modes, chains: dict[int, list[np.ndarray]], min_draws: int) -> list[_Source]:
    """The estimate of each basin ``k`` of ``chains`` (``{k: its chains}``): with at least
    ``min_draws`` draws, the bridge (the first half of each chain fits the proposal, with the
    Hessian at its mean, one batch for every basin; the second half enters the estimate); with
    fewer, importance sampling from the mode's own component of :func:`modes_proposal`."""
    fits = {
        k: np.concatenate([c[: len(c) // 2] for c in basin])
        for k, basin in chains.items()
        if sum(len(c) for c in basin) >= min_draws
    }
    means = np.stack([fit.mean(axis=0) for fit in fits.values()]).astype(jnp.result_type(float)) if fits else None
    mean_hessians = dict(zip(fits, curvature(target, means)[2])) if fits else {}
    sources = []
    for k, basin in chains.items():
        if k not in fits:
            sources.append(_Source(modes_proposal(modes, np.eye(len(modes))[k]), []))
            continue
        proposal = fit_proposal(fits[k], modes.location[k], modes.hessian[k], np.asarray(mean_hessians[k], float))
        halves = [c[len(c) // 2 :] for c in basin if len(c) - len(c) // 2 > 0]
        log_pi = np.split(_log_density_rows(target, np.concatenate(halves)), np.cumsum([len(h) for h in halves])[:-1])
        sources.append(_Source(proposal, [lp - _log_fitted(proposal, h) for lp, h in zip(log_pi, halves)]))
    return sources


def _log_marginal(l1: list[np.ndarray], l2) -> BridgeEstimate:
    """:math:`\\log Z` of a basin from its draws' ratios ``l1`` and its proposal draws' ``l2``: the
    bridge (:func:`~numpyro_stein_diag.bridge.bridge_log_marginal`), or without draws of the basin
    importance sampling, :math:`\\hat Z = \\bar w` with :math:`\\mathrm{RE}^2 = \\widehat{\\mathrm{Var}}\\, w /
    (N \\bar w^2)` and the weights' effective size :math:`(\\sum w)^2 / \\sum w^2`."""
    if l1:
        return bridge_log_marginal(l1, l2)
    l2 = np.asarray(l2, float)
    if not np.isfinite(l2).any():
        raise ValueError(f"no proposal draw of {len(l2)} landed in the basin; draw more of them.")
    w = np.exp(l2 - np.max(l2))
    ess = float(np.sum(w) ** 2 / np.sum(w**2))
    return BridgeEstimate(
        log_z=float(logsumexp(l2) - np.log(len(l2))),
        re2=float(np.var(w) / np.mean(w) ** 2 / len(l2)),
        ess=ess,
        iterations=0,
    )


class _Side(NamedTuple):
    """One basin's proposal draws ``y``, their ``log_pi``, log ratios ``l2_all`` (whatever their basin),
    which of them bear weight (``needed``, :func:`_bears_weight`) and their ``basin`` (``-1`` where
    none, and where not ``needed``)."""

    y: np.ndarray
    log_pi: np.ndarray
    l2_all: np.ndarray
    needed: np.ndarray
    basin: np.ndarray


def _proposal_sides(target, modes, sources: list[_Source], rng_key, num_draws: int, num_iter: int) -> list[_Side]:
    """Draws of each source's proposal (``num_draws``; ``IMPORTANCE_DRAWS`` times as many for an
    importance estimate, whose draws alone stand for the basin), their log ratios, and the basins
    of those that bear weight (:func:`_bears_weight`), all by one
    :func:`~numpyro_stein_diag.basins.assign_basins` call."""
    keys = split_keys(rng_key, len(sources))
    drawn = [
        sample_proposal(target, s.proposal, key, num_draws * (1 if s.l1 else IMPORTANCE_DRAWS))
        for s, key in zip(sources, keys)
    ]
    needed = [_bears_weight(s.l1, l2) for s, (_, l2) in zip(sources, drawn)]
    basin = assign_basins(target, modes, np.concatenate([y[n] for (y, _), n in zip(drawn, needed)]), num_iter=num_iter)
    basin = np.split(basin, np.cumsum([n.sum() for n in needed])[:-1])
    sides = []
    for s, (y, l2), n, b in zip(sources, drawn, needed, basin):
        side_basin = np.full(len(y), -1)
        side_basin[n] = b
        sides.append(_Side(y, l2 + _log_fitted(s.proposal, y), l2, n, side_basin))
    return sides


def bridge_masses(
    target: Target,
    modes: Modes,
    chains: list[np.ndarray],
    rng_key,
    num_draws: int = 2000,
    basin_iter: int = 50,
    chain_basins: list[np.ndarray] | None = None,
) -> ModeMasses:
    """Masses of the modes' basins by bridge sampling (:mod:`~numpyro_stein_diag.bridge`) from
    ``chains`` (a list of ``(n, d)`` draws of the posterior, in chain order, whose basins are
    ``chain_basins`` when known, else assigned here).

    Per basin :math:`B_k`, from each chain's draws in it (:func:`_source`): with at least
    ``MIN_BASIN_DRAWS``, the first half of each chain fits the proposal :math:`g_k`
    (:func:`~numpyro_stein_diag.bridge.fit_proposal`), the second half and ``num_draws`` draws of
    :math:`g_k` enter the bridge for :math:`Z_k = \\int_{B_k} \\pi` with target
    :math:`\\pi(x) 1[x \\in B_k]` (the basin of a proposal draw by
    :func:`~numpyro_stein_diag.basins.assign_basins`). With fewer (a mode the chains missed),
    :math:`Z_k` is estimated by importance sampling from the mode's own Student-t proposal; only
    when its weights are not to be trusted (Pareto :math:`\\hat k > 0.7`: a basin with heavier tails
    than the proposal) is the basin sampled by short NUTS chains from its mode, cut where they first
    leave it, for a bridge of its own. Proposal draws in no known basin estimate the mass outside
    them by importance sampling from the even mixture :math:`\\bar g` of the proposals,
    :math:`\\hat Z_0 = \\frac{1}{N} \\sum_j \\pi(y_j) / \\bar g(y_j) 1[y_j \\notin \\cup B_k]`.
    Then :math:`M_k = Z_k / (Z_0 + \\sum_j Z_j)`, and with independent errors of variance
    :math:`v_k = \\mathrm{RE}^2_k` on :math:`\\log Z_k` the delta method gives

    .. math::

        \\mathrm{se}^2(M_k) = M_k^2 \\Bigl[(1 - M_k)^2 v_k + \\sum_{j \\ne k} M_j^2 v_j\\Bigr].

    Each se is at least one over the basins' effective draws (no share is judged against an se of 0).
    ``pareto_k`` is the largest Pareto :math:`\\hat k` of the proposal-side weights
    :math:`\\pi 1[B_k] / g_k` (for a bridge, above 0.7 the proposal misses the basin's tails: the
    bridge still holds, at a cost in efficiency). Each basin's weighted proposal draws are kept as
    ``pools`` for the repair. Raises :class:`BridgeUnavailable` when a basin has fewer than
    ``MIN_FIT_DRAWS`` draws even after the top-up, or no proposal draw lands in it."""
    k_top_up, k_first, k_again = split_keys(rng_key, 3)
    if chain_basins is None:
        chain_basins = _basins_of_chains(target, modes, chains, basin_iter)
    per_basin = _chains_per_basin(chains, chain_basins, len(modes))
    sources = _sources(target, modes, dict(enumerate(per_basin)), MIN_BASIN_DRAWS)
    sides = _proposal_sides(target, modes, sources, k_first, num_draws, basin_iter)
    l2 = [np.where(side.basin == k, side.l2_all, -np.inf) for k, side in enumerate(sides)]
    untrusted = [k for k, s in enumerate(sources) if not s.l1 and not (psis_weights(l2[k])[1] <= PARETO_K_LIMIT)]
    if untrusted:
        topped = dict(zip(untrusted, _topped_up(target, modes, untrusted, k_top_up, basin_iter)))
        chains_of = {k: per_basin[k] + topped[k] for k in untrusted}
        for k, source in zip(untrusted, _sources(target, modes, chains_of, MIN_FIT_DRAWS)):
            if not source.l1:
                count = sum(len(c) for c in chains_of[k])
                raise BridgeUnavailable(f"{modes.describe(k)} has {count} draws in its basin.")
            sources[k] = source
        again = _proposal_sides(target, modes, [sources[k] for k in untrusted], k_again, num_draws, basin_iter)
        for k, side in zip(untrusted, again):
            sides[k] = side
            l2[k] = np.where(side.basin == k, side.l2_all, -np.inf)
    estimates = []
    for k in range(len(modes)):
        try:
            estimates.append(_log_marginal(sources[k].l1, l2[k]))
        except ValueError as err:
            raise BridgeUnavailable(f"{modes.describe(k)}: {err}") from None
    log_z = np.array([e.log_z for e in estimates])
    log_z0 = _log_unknown_mass([s.proposal for s in sources], sides)
    log_total = logsumexp(np.append(log_z, log_z0))
    mass = np.exp(log_z - log_total)
    v = np.array([e.re2 for e in estimates])
    se = mass * np.sqrt((1 - mass) ** 2 * v + np.sum(mass**2 * v) - mass**2 * v)
    resolution = 1.0 / sum(e.ess for e in estimates)  # one effective draw of the basins' samples: no se of 0
    # the proposal draws that bear weight, for the search to go on from those in no known basin
    y, basin, log_pi = (np.concatenate([getattr(s, f)[s.needed] for s in sides]) for f in ("y", "basin", "log_pi"))
    return ModeMasses(
        mass=mass,
        mass_se=np.maximum(se, resolution),
        pareto_k=float(np.max([psis_weights(w)[1] for w in l2])),
        unknown_mass=float(np.exp(log_z0 - log_total)),
        mass_method="bridge",
        unseen_starts=unseen_starts(y, basin, log_pi),
        pools=tuple(BasinPool(s.proposal, side.y, w) for s, side, w in zip(sources, sides, l2)),
    )


NEGLIGIBLE_NATS = 35.0  # a bridge term this far below the basin's constant adds less than e^-35 to it


def _bears_weight(l1: list[np.ndarray], l2_all) -> np.ndarray:
    """Which draws of a basin's proposal need a basin: those whose ratio :math:`\\ell = \\pi / g_k`
    (``l2_all``) is within ``NEGLIGIBLE_NATS`` of :math:`Z_k` as estimated with every draw counted in
    the basin (at least the basin's own :math:`Z_k`; :func:`_log_marginal` with the basin's draws'
    ratios ``l1``). A draw far below it adds at most :math:`\\ell / (s_2 Z_k)` to the bridge's sums
    (and :math:`\\ell / (N Z_k)` to an importance estimate) and to the mass outside every basin,
    whichever basin it lies in, so no ascent is spent on it: the far tails of a heavy-tailed
    proposal (on a 100-group hierarchy, most of its draws) are counted in no basin."""
    return l2_all >= _log_marginal(l1, l2_all).log_z - NEGLIGIBLE_NATS


def _mixture(proposal: Proposal) -> tuple:
    """A fitted proposal as the ``(loc, roots, weights, df)`` of :func:`_t_mixture_draws` and :func:`_log_proposal`."""
    return proposal.location, proposal.roots, proposal.weights, proposal.df


def _log_fitted(proposal: Proposal, y) -> np.ndarray:
    """``log g(y)`` of a fitted proposal at the rows of ``y``."""
    return _log_proposal(y, *_mixture(proposal))


def _log_unknown_mass(proposals, sides: list[_Side]) -> float:
    """:math:`\\log \\hat Z_0`, the mass of the proposal draws in no known basin, by importance
    sampling from the mixture :math:`\\bar g = \\sum_k (N_k / N) g_k` of ``proposals`` that drew them
    (``N_k`` draws of :math:`g_k`, ``sides``): :math:`\\hat Z_0 = \\frac1N \\sum_j \\pi(y_j) / \\bar g(y_j)
    1[y_j \\notin \\cup B_k]` (``-inf`` when no draw is outside every basin)."""
    y = np.concatenate([side.y for side in sides])
    outside = np.concatenate([side.basin for side in sides]) < 0
    if not outside.any():
        return -np.inf
    shares = np.log([len(side.y) / len(y) for side in sides])
    log_mix = logsumexp(np.stack([share + _log_fitted(p, y[outside]) for share, p in zip(shares, proposals)]), axis=0)
    log_pi = np.concatenate([side.log_pi for side in sides])[outside]
    return float(logsumexp(log_pi - log_mix) - np.log(len(y)))
