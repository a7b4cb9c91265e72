"""The repaired posterior: a method's draws with each basin holding its estimated mass.

Within a basin, a chain that stays there is a fine sample of the posterior restricted to that
basin; what a stuck chain lacks is the right weight. The repaired posterior keeps each basin's
own draws and sets the basin counts from the masses. Of the method's ``N`` draws, those in no
known basin keep ``n_none = min(c_none, round(N u))`` of theirs (``u`` the unknown mass of
:func:`~numpyro_stein_diag.masses.mode_masses`), and basin ``k`` gets

.. math::

    n_k = \\mathrm{round}\\Big((N - n_\\text{none}) \\frac{M_k}{\\sum_j M_j}\\Big)
    \\quad\\text{(largest remainder, so } \\textstyle\\sum_k n_k = N - n_\\text{none}).

A basin with ``c_k >= n_k`` own draws gives a uniform subsample of ``n_k`` of them (without
replacement); a basin with fewer keeps all ``c_k`` and is topped up with ``n_k - c_k`` draws
that follow the posterior restricted to the basin, made by **importance resampling** from the
draws that estimated the basin's mass (:class:`~numpyro_stein_diag.masses.BasinPool`): draws
:math:`y \\sim g_k` of the basin's proposal (fitted to the draws in the basin for a bridge
estimate, the mode's own Student-t :math:`t_\\nu(m_k, s^2 H_k^{-1})` for an importance one),
weights :math:`w = \\pi(y) / g_k(y) \\cdot 1[y \\in B_k]` (basins by the mass estimate's ascents;
more draws of :math:`g_k`, with their own ascents, only while fewer than ``FILL_POOL_FACTOR`` times
the draws needed are in the basin), systematic resampling. The Pareto :math:`\\hat k` of the
pool's log weights (PSIS, arviz-stats) says whether the fill-in can be trusted
(:math:`\\hat k \\le 0.7`) and the weights' ESS :math:`(\\sum w)^2 / \\sum w^2` how many distinct
draws it rests on. Where the fitted proposal's weights are not trusted (a light-tailed fit to a
basin cut off on one side: the wider tail's weights grow), the mode's own heavy-tailed Student-t
is tried as well, and the pool with the lower :math:`\\hat k` fills the basin.

Why importance resampling rather than short NUTS runs from the mode: the proposal is already
fitted to each basin (and its draws already have their basins), it stays in the basin by
construction (draws that ascend elsewhere get weight 0, which a chain started at the mode
does not guarantee), it needs no tuning, and it carries its own reliability diagnostic.

**A repair never makes a sample worse.** A fill-in whose weights have :math:`\\hat k > 0.7`
(``PARETO_K_LIMIT``) or an ESS below ``MIN_FILL_ESS`` would replace the method's draws in that
basin by a few repeated points (a funnel's neck: 68 distinct points for 2000 exact draws), so
the repair is refused with the reason, and the method's own draws stand as they are.

The selected draws are shuffled into the method's ``(chain, draw)`` shape, so every chain
holds every basin in proportion. Chain and draw then carry no time order: R-hat and ESS
computed on the repaired draws describe the resampled set, not the sampler that made them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .basins import assign_basins
from .host import numpy_rng, split_keys, systematic_resample
from .masses import PARETO_K_LIMIT, BasinPool, ModeMasses, modes_proposal, psis_weights, sample_proposal
from .modes import DRAW_CHUNK, Modes
from .target import Target

__all__ = ["Repair", "repair"]

MIN_FILL_ESS = 10.0  # fewer effective draws than this is "a handful": no fill-in rests on it
FILL_POOL_FACTOR = 4  # pool draws in the basin per fill-in draw needed
MAX_POOL_BATCHES = 32  # batches of DRAW_CHUNK proposal draws (the size the mass estimate compiled)


@dataclass(frozen=True, eq=False)
class Repair:
    """A method's repaired draws and what was done per mode.

    Attributes: ``draws (chain, draw, d)`` unconstrained and ``samples`` (``{site: (chain, draw,
    ...)}`` in the model's space, deterministic sites included), ``mass`` and ``share_before`` (K,),
    ``kept`` and ``filled`` (K,) draw counts, ``fill_pareto_k`` and ``fill_ess`` (K,; NaN
    where nothing was filled), ``unknown_kept`` (draws in no known basin kept) and
    ``fill_method`` (one sentence).
    """

    draws: np.ndarray
    samples: dict
    mass: np.ndarray
    share_before: np.ndarray
    kept: np.ndarray
    filled: np.ndarray
    fill_pareto_k: np.ndarray
    fill_ess: np.ndarray
    unknown_kept: int
    fill_method: str


def basin_counts(mass, unknown_mass: float, unknown_draws: int, total: int) -> tuple[np.ndarray, int]:
    """Draws per basin ``n_k`` and draws kept in no basin, for ``total`` draws (module docstring)."""
    mass = np.asarray(mass, dtype=float)
    if not (np.all(np.isfinite(mass)) and mass.sum() > 0):
        raise ValueError(f"the mode masses {mass} are not finite and positive: there is nothing to repair against.")
    none = min(int(unknown_draws), int(round(total * float(unknown_mass))))
    share = mass / mass.sum() * (total - none)
    counts = np.floor(share).astype(int)
    remainder = total - none - counts.sum()
    counts[np.argsort(-(share - counts), kind="stable")[:remainder]] += 1
    return counts, none


def restricted_draws(target: Target, modes: Modes, k: int, pool: BasinPool, rng_key, num: int, canonicalize=None):
    """``num`` draws following the posterior restricted to mode ``k``'s basin, by importance
    resampling from ``pool`` (the mass estimate's weighted draws of the basin), drawing more of its
    proposal while fewer than ``FILL_POOL_FACTOR * num`` of its draws are in the basin (module docstring);
    returns ``(draws (num, d), pareto_k, weights_ess)``."""
    y, log_w = [pool.y], [pool.log_weight]
    *more_keys, resample_key = split_keys(rng_key, MAX_POOL_BATCHES + 1)
    while np.sum(np.isfinite(np.concatenate(log_w))) < FILL_POOL_FACTOR * num and more_keys:
        more, lw = sample_proposal(target, pool.proposal, more_keys.pop(), DRAW_CHUNK)
        y.append(more)
        log_w.append(np.where(assign_basins(target, modes, more, canonicalize=canonicalize) == k, lw, -np.inf))
    w, khat = psis_weights(np.concatenate(log_w))
    if not w.any():
        raise ValueError(
            f"no proposal draw around {modes.describe(k)} ascends into its basin: the basin cannot be "
            "filled by importance resampling."
        )
    return np.concatenate(y)[systematic_resample(resample_key, w, num)], khat, float(1.0 / np.sum(w**2))


def _fill(target: Target, modes: Modes, masses: ModeMasses, k: int, rng_key, num: int, canonicalize):
    """``num`` fill-in draws of basin ``k`` (:func:`restricted_draws`) from the masses' pool of the
    basin (the proposal fitted to its draws) and, where that one's weights are not trusted
    (Pareto :math:`\\hat k > 0.7`: a light-tailed fit to a basin cut off on one side), from the
    mode's own Student-t, whichever has the lower :math:`\\hat k`; the mode's Student-t alone when
    the masses kept no pool."""
    mode_t = BasinPool.empty(modes_proposal(modes, np.eye(len(modes))[k]))
    pools = [masses.pools[k], mode_t] if masses.pools else [mode_t]
    best = None
    for pool, key in zip(pools, split_keys(rng_key, len(pools))):
        made = restricted_draws(target, modes, k, pool, key, num, canonicalize)
        best = made if best is None or made[1] < best[1] else best
        if best[1] <= PARETO_K_LIMIT:
            break
    return best


def _refuse_unreliable_fill(modes: Modes, k: int, needed: int, pareto_k: float, ess: float) -> None:
    """Raise when the fill-in of mode ``k`` would rest on unreliable weights (module docstring)."""
    if pareto_k > PARETO_K_LIMIT or ess < MIN_FILL_ESS:
        raise ValueError(
            f"no repair: {needed} draws for {modes.describe(k)} would come from importance weights with "
            f"Pareto k = {pareto_k:.2f} (reliable up to {PARETO_K_LIMIT}) resting on {ess:.1f} effective "
            "draws, a few repeated points in place of the method's own; the method's draws are kept as they are."
        )


def repair(target: Target, modes: Modes, masses: ModeMasses, draws, basins, rng_key, canonicalize=None) -> Repair:
    """Repair ``draws (chain, draw, d)`` whose basins are ``basins (chain, draw)`` (from
    :func:`assign_basins`) so each of ``modes`` holds its mass (``masses.mass``); see the module docstring."""
    draws, basins = np.asarray(draws), np.asarray(basins)
    shape = draws.shape
    flat, labels = draws.reshape(-1, shape[-1]), basins.reshape(-1)
    total, k = len(labels), len(modes)
    counts, none = basin_counts(masses.mass, masses.unknown_mass, int(np.sum(labels < 0)), total)
    k_pick, k_fill = split_keys(rng_key)
    rng = numpy_rng(k_pick)
    chosen = [rng.choice(np.flatnonzero(labels < 0), none, replace=False)] if none else []
    kept, filled = np.zeros(k, int), np.zeros(k, int)
    fill_khat, fill_ess = np.full(k, np.nan), np.full(k, np.nan)
    fill = []
    for j, key in zip(range(k), split_keys(k_fill, k)):
        own = np.flatnonzero(labels == j)
        kept[j] = min(len(own), counts[j])
        chosen.append(rng.choice(own, kept[j], replace=False))
        filled[j] = counts[j] - kept[j]
        if filled[j]:
            x, fill_khat[j], fill_ess[j] = _fill(target, modes, masses, j, key, filled[j], canonicalize)
            _refuse_unreliable_fill(modes, j, filled[j], fill_khat[j], fill_ess[j])
            fill.append(x)
    repaired = np.concatenate([flat[np.concatenate(chosen).astype(int)]] + fill)
    order = rng.permutation(total)
    share_before = np.array([np.mean(labels == j) for j in range(k)])
    fill_method = (
        "kept each basin's own draws (a uniform subsample where it had more than its mass); "
        "topped up basins with too few by importance resampling of the mass estimate's proposal "
        "draws restricted to the basin"
    )
    repaired = repaired[order].reshape(shape)
    samples = {name: np.asarray(v) for name, v in target.constrain(repaired, deterministic=True).items()}
    return Repair(
        repaired,
        samples,
        np.asarray(masses.mass, float),
        share_before,
        kept,
        filled,
        fill_khat,
        fill_ess,
        none,
        fill_method,
    )
