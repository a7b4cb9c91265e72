"""Mode masses: the posterior mass of each mode's basin, by importance sampling.

The mass of a basin ``B_k`` (the points whose ascent ends at mode ``k``,
:func:`~numpyro_stein_diag.basins.assign_basins`) is estimated by importance sampling from a
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

from dataclasses import dataclass
from typing import Literal, get_args

import jax.numpy as jnp
import numpy as np
from arviz_stats.base import array_stats
from scipy.linalg import solve_triangular
from scipy.special import gammaln, logsumexp

from .basins import assign_basins
from .host import numpy_rng
from .modes import Modes, log_densities
from .target import Target

__all__ = ["ModeMasses", "MassMethod", "mode_masses"]

PARETO_K_LIMIT = 0.7
PROPOSAL_DF = 5.0  # Student-t degrees of freedom of the importance proposal
PROPOSAL_SCALE = 1.5  # its covariance is PROPOSAL_SCALE^2 H^{-1} at each mode
MassMethod = Literal["importance", "laplace", "none"]
MASS_METHODS: tuple[str, ...] = get_args(MassMethod)


@dataclass(frozen=True, eq=False)
class ModeMasses:
    """The masses of K modes' basins (:func:`mode_masses`), in the order of the modes.

    ``mass`` and ``mass_se`` ``(K,)``, the Pareto :math:`\\hat k` of the importance weights
    (``pareto_k``), ``unknown_mass`` (the share of importance weight that landed in no known
    basin) and ``mass_method`` (one of :data:`MASS_METHODS`: ``"importance"``, ``"laplace"``
    when the weights were not trusted, or ``"none"`` when the masses could not be estimated
    and are NaN).
    """

    mass: np.ndarray
    mass_se: np.ndarray
    pareto_k: float
    unknown_mass: float
    mass_method: MassMethod

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
    """:math:`\\log q(y) = \\log \\sum_k a_k t_\\nu(y; m_k, (R_k R_k^\\top)^{-1})` at each row of
    ``y (n, d)``, on the host (float64), with

    .. math::

        \\log t_\\nu(y; m, (R R^\\top)^{-1}) = \\log\\Gamma(\\tfrac{\\nu + d}{2}) - \\log\\Gamma(\\tfrac{\\nu}{2})
            - \\tfrac{d}{2} \\log(\\nu\\pi) + \\log\\det R - \\tfrac{\\nu + d}{2}
            \\log\\bigl(1 + \\|R^\\top (y - m)\\|^2 / \\nu\\bigr).
    """
    d = y.shape[1]
    const = gammaln((df + d) / 2) - gammaln(df / 2) - 0.5 * d * np.log(df * np.pi)
    with np.errstate(divide="ignore"):  # a weight of 0 (the repair's one-mode proposal) is log 0 = -inf
        log_a = np.log(weights)
    per_mode = [
        log_a[k]
        + const
        + np.sum(np.log(np.diag(roots[k])))
        - 0.5 * (df + d) * np.log1p(np.sum(((y - loc[k]) @ roots[k]) ** 2, axis=1) / df)
        for k in range(len(loc))
    ]
    return logsumexp(np.stack(per_mode, axis=1), axis=1)


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


def proposal_draws(
    target: Target,
    modes: Modes,
    rng_key,
    num_draws: int,
    weights,
    df: float = PROPOSAL_DF,
    scale: float = PROPOSAL_SCALE,
):
    """``num_draws`` draws ``y (n, d)`` from the mode mixture
    :math:`q = \\sum_k a_k t_\\nu(m_k, s^2 H_k^{-1})` (``weights`` = :math:`a`) and their log
    importance weights :math:`\\log \\pi(y) - \\log q(y)` (``-inf`` where the target is not finite).

    A draw is :math:`m_c + R_c^{-\\top} z / \\sqrt{g}` with :math:`c \\sim a`, :math:`z \\sim N(0, I)`,
    :math:`g \\sim \\chi^2_\\nu / \\nu` and :math:`R_k R_k^\\top = H_k / s^2`. The draws and
    :math:`\\log q` are made on the host (:func:`~numpyro_stein_diag.host.numpy_rng`); only the
    target's log density is compiled (:func:`~numpyro_stein_diag.modes.log_densities`)."""
    dtype = jnp.result_type(float)
    loc = np.asarray(modes.location, float)
    roots = _precision_roots(modes, scale)
    weights = np.asarray(weights, float)
    rng = numpy_rng(rng_key)
    comp = rng.choice(len(weights), num_draws, p=weights / weights.sum())
    z = rng.standard_normal((num_draws, loc.shape[1]))
    g = rng.chisquare(df, num_draws) / df
    y = np.empty_like(z)
    for k in np.unique(comp):  # one product per mode, not an (n, d, d) stack of factors
        rows = comp == k
        y[rows] = loc[k] + solve_triangular(roots[k].T, z[rows].T, lower=False).T / np.sqrt(g[rows])[:, None]
    y = y.astype(dtype)
    log_p = log_densities(target, y)
    log_q = _log_proposal(y.astype(float), loc, roots, weights, df)
    return y, np.where(np.isfinite(log_p), log_p - log_q, -np.inf)


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
) -> ModeMasses:
    """Estimate each mode's posterior mass: a :class:`ModeMasses` (``mass``, ``mass_se``, ``pareto_k``, ...).

    ``num_draws`` per mode are drawn from the defensive Student-t mixture (``df``
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
    weights = 0.5 * modes.laplace_mass + 0.5 / k
    y, log_w = proposal_draws(target, modes, rng_key, num_draws * k, weights, df, scale)
    basins = assign_basins(target, modes, y, num_iter=basin_iter, canonicalize=canonicalize)
    w, khat = psis_weights(log_w)  # normalised: sum w = 1
    mass = np.array([w[basins == j].sum() for j in range(k)])
    indicator = basins[None, :] == np.arange(k)[:, None]
    se = np.sqrt(np.sum(w[None, :] ** 2 * (indicator - mass[:, None]) ** 2, axis=1))
    resolution = np.sum(w**2)  # 1 / ESS of the weights
    se = np.maximum(se, resolution)
    unknown = float(w[basins < 0].sum())
    if not np.isfinite(khat) or khat > PARETO_K_LIMIT:
        laplace = modes.laplace_mass
        return ModeMasses(
            mass=laplace,
            mass_se=np.maximum(np.abs(laplace - mass), resolution),
            pareto_k=khat,
            unknown_mass=unknown,
            mass_method="laplace",
        )
    return ModeMasses(mass=mass, mass_se=se, pareto_k=khat, unknown_mass=unknown, mass_method="importance")
