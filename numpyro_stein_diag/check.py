"""The mode-mass check: the share of a method's draws in each basin against the basin's mass.

For mode ``k`` with estimated mass :math:`M_k \\pm \\mathrm{se}_k` (as a fraction of the mass the
modes hold) and observed share :math:`o_k` of a method's draws (of those in some mode's basin),
under "the sample is a correct posterior sample"

.. math::

    z_k = \\frac{o_k - M_k}{\\sqrt{M_k (1 - M_k) / \\mathrm{ESS}_k + \\mathrm{se}_k^2}},

with :math:`\\mathrm{ESS}_k` the effective sample size of the basin indicator
:math:`1[x \\in B_k]` (``arviz_stats`` "mean" ESS over chains for MCMC draws, at least the
number of chains; ``n`` for independent draws or SVGD particles). The p-value is not the
normal one, which is far too small at the small ESS of a few chains, but the exact two-sided
tail of the effective count :math:`c = o_k\\, \\mathrm{ESS}_k` under a beta-binomial law: ``ESS``
trials whose success probability is Beta-distributed with mean :math:`M_k` and sd
:math:`\\mathrm{se}_k` (the binomial when :math:`\\mathrm{se}_k = 0`); it has the variance in the
denominator of :math:`z_k` above and tends to the normal p-value as the ESS grows. When the
indicator is the same in every draw (no chain ever visits the basin, or
every draw is in it) its ESS is undefined; the sample's own ESS (smallest bulk ESS of
the draws' coordinates, ``draws_ess``) stands in: it is the precision the sample claims
for everything else, and a sample that claims it should not miss a basin of that mass.

**Chains that do not move between modes.** The ESS above treats each chain as at least one
effective draw, which holds only for chains started at exact posterior draws. Chains start
from prior draws or init strategies, so a chain that stays in the basin it started in
carries the weight of its start, not of the posterior. Chains *mix between modes* when

- the rank-normalised split R-hat (Vehtari et al. 2021, arviz-stats) of every basin
  indicator that varies is at most ``MIXING_RHAT = 1.01``: the chains (and the two halves
  of each) agree on every basin's share; and
- they move between basins at least ``MIN_TRANSITIONS_PER_CHAIN = 10`` times per chain on
  average: for a two-state chain the indicator's ESS is about its number of transitions,
  and with fewer than five sojourns per split half its autocorrelation (so its ESS) is
  estimated from too few events to mean anything.

A multi-mode target whose draws never leave one basin does not mix. Where chains do not mix
the share is no evidence about the weights, so it is compared with the mass through the
mass's own uncertainty alone, :math:`z_k = (o_k - M_k) / \\mathrm{se}_k`: the flag then says
that the sample's weights are off, whatever the chains could or could not have seen.

**A practical size is part of the test.** A share off by less than ``tolerance`` (5 points)
is not worth a flag however precise it is, so each mode's null hypothesis is the interval
:math:`|o_k - M_k| \\le \\delta` (``delta = tolerance``), not the point :math:`o_k = M_k`. Its
p-value is the largest over that interval, reached at the end nearest the share: 1 when the
share lies within the tolerance, else the tests above against :math:`M_k \\pm \\delta`
(:math:`z_k = (|o_k - M_k| - \\delta) / \\mathrm{se}_k` for chains that do not mix). So a
p-value below ``alpha`` already means "off by more than the tolerance", and the p-value a
report prints never contradicts its flag column.

Flags are judged on Holm-adjusted p-values over the family of one method's tests (every
mode's test and the method's KSD tests, ``tests``), so a correct sample raises a flag with
probability at most ``alpha`` however many modes and tests there are (Holm 1979: valid under
any dependence). :func:`judge` is the one place this is done:

- ``missed_mode``: :math:`M_k \\ge` ``mass_floor``, :math:`o_k < M_k / 4`, p < ``alpha``;
- ``misweighted_mode``: any other mode with p < ``alpha``;
- ``unverified_mode``: the mode's mass or its standard error is not a finite number, so the
  share cannot be judged (the check fails closed: a NaN mass never silences a flag). Masses
  that were not estimated at all (``mass_method = "none"``: the density grows above every
  mode) raise no flag of any kind; the report's masses stage says why;
- ``unknown_region``: more than ``unknown_tolerance`` of the draws ascend to no known mode;
- ``ksd_reject``: one of the method's KSD tests rejects (the plain test sees local misfit, the
  perturbed test also sees wrong weights once draws jump between modes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal, get_args

import numpy as np
from arviz_stats.base import array_stats
from scipy.stats import betabinom, binom, norm

from .ksd import KSDTest
from .masses import ModeMasses
from .modes import Modes

__all__ = ["Flag", "FlagKind", "ModeCheck", "check_mode_mass", "judge", "holm", "share_pvalue"]

FlagKind = Literal["missed_mode", "misweighted_mode", "unverified_mode", "unknown_region", "ksd_reject"]
FLAG_KINDS: tuple[str, ...] = get_args(FlagKind)
KSD_TESTS = {  # a method's KSD tests and what a rejection says
    "plain": "the draws' local shape or spread differs from the posterior's",
    "perturbed": "the mode weights look wrong once draws jump between modes",
}


@dataclass(frozen=True)
class Flag:
    """One finding about one method: what (``kind``, one of :data:`FLAG_KINDS`), where (``mode``,
    -1 when the flag is not about one mode), the numbers (expected mass and se against the
    observed share; for ``ksd_reject`` the KSD^2 as ``observed``), the Holm-adjusted p-value and
    a sentence."""

    method: str
    kind: FlagKind
    mode: int
    expected: float
    expected_se: float
    observed: float
    pvalue: float
    message: str

    def __post_init__(self):
        if self.kind not in FLAG_KINDS:
            raise ValueError(f"flag kind must be one of {FLAG_KINDS}, got {self.kind!r}.")


@dataclass(frozen=True)
class ModeCheck:
    """One method's mode-mass check (arrays over modes) and its flags.

    ``expected_mass`` and ``expected_mass_se`` are the modes' masses as fractions of what the
    modes hold; ``observed_share`` the share of the draws in a known basin that lie in each;
    ``unknown_share`` the share of all draws in no known basin. ``ess`` is the basin
    indicator's effective sample size, ``pvalue`` the unadjusted p-value of the interval null
    (module docstring), ``tolerance`` its half-width. ``transitions`` (per chain) and
    ``basin_rhat`` (per mode) describe how chains move between modes (None for independent
    draws); ``mixing`` is False when they do not mix, and the shares were then judged against
    the masses' standard errors alone. ``flags`` come from :func:`judge`.
    """

    method: str
    expected_mass: np.ndarray
    expected_mass_se: np.ndarray
    observed_share: np.ndarray
    ess: np.ndarray
    pvalue: np.ndarray
    unknown_share: float
    flags: tuple[Flag, ...] = ()
    transitions: np.ndarray | None = None
    basin_rhat: np.ndarray | None = None
    mixing: bool = True
    tolerance: float = 0.05


MIXING_RHAT = 1.01
MIN_TRANSITIONS_PER_CHAIN = 10


def basin_ess(basins: np.ndarray, num_modes: int, independent: bool, draws_ess: float | None = None) -> np.ndarray:
    """Effective sample size of each basin indicator for draws ``basins (chain, draw)``."""
    n = basins.size
    if independent or basins.shape[0] * basins.shape[1] < 4:
        return np.full(num_modes, float(n))
    ess = np.empty(num_modes)
    for k in range(num_modes):
        indicator = (basins == k).astype(float)
        if indicator.min() == indicator.max():
            # the same in every draw: the indicator has no variance to measure
            ess[k] = basins.shape[0] if draws_ess is None else draws_ess
            continue
        value = float(array_stats.ess(indicator, chain_axis=0, draw_axis=1, method="mean"))
        ess[k] = np.clip(value if np.isfinite(value) else basins.shape[0], basins.shape[0], n)
    return ess


def share_pvalue(observed: float, ess: float, mass: float, se: float, tolerance: float = 0.0) -> float:
    """Two-sided p-value of a share ``observed`` at effective size ``ess`` against a mass
    ``mass +- se`` (module docstring): the beta-binomial tails of the effective count, doubled.
    With ``tolerance`` the null is ``|share - mass| <= tolerance``: 1 inside, else the test
    against the interval's end nearest the share."""
    if abs(observed - mass) <= tolerance:
        return 1.0
    mass = float(np.clip(mass + np.sign(observed - mass) * tolerance, 0.0, 1.0))
    trials = max(int(round(ess)), 1)
    count = int(round(observed * trials))
    if mass <= 0.0 or mass >= 1.0:
        return 1.0 if count == round(mass * trials) else 0.0
    spread = mass * (1.0 - mass) / se**2 - 1.0 if se > 0 else np.inf  # a + b of the Beta law
    if spread <= 0:  # the mass is too uncertain to contradict any share
        return 1.0
    law = binom(trials, mass) if np.isinf(spread) else betabinom(trials, mass * spread, (1.0 - mass) * spread)
    return float(min(1.0, 2.0 * min(law.cdf(count), law.sf(count - 1))))


P_FLOOR = 1e-3  # share tests rest on a mass se and an ESS, each good to a few percent


def format_pvalue(p: float, floor: float = P_FLOOR) -> str:
    """``"0.046"``, ``"< 0.001"``: two digits, nothing below ``floor``; blank for NaN."""
    if not np.isfinite(p):
        return ""
    return f"< {floor:.2g}" if p < floor else f"{p:.2g}"


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values: :math:`\\tilde p_{(i)} = \\max_{j \\le i} \\min(1, (m - j + 1) p_{(j)})`.

    NaN p-values count as 0 (not checked is not evidence of a correct sample)."""
    p = np.nan_to_num(np.asarray(pvalues, dtype=float), nan=0.0)
    order = np.argsort(p)
    adjusted = np.maximum.accumulate(np.minimum(1.0, (len(p) - np.arange(len(p))) * p[order]))
    out = np.empty_like(p)
    out[order] = adjusted
    return out


def basin_transitions(basins: np.ndarray) -> np.ndarray:
    """Moves from one known basin to another in each chain of ``basins (chain, draw)``.

    Draws in no known basin (``-1``) are skipped, so a passage through the region between
    two modes counts once.
    """
    counts = []
    for chain in np.asarray(basins):
        known = chain[chain >= 0]
        counts.append(int(np.count_nonzero(known[1:] != known[:-1])))
    return np.array(counts)


def basin_rhat(basins: np.ndarray, num_modes: int) -> np.ndarray:
    """Rank-normalised split R-hat (arviz-stats) of each basin indicator over ``basins (chain, draw)``.

    NaN where the indicator is the same in every draw (nothing to compare); ``inf`` where it
    differs between chains or chain halves but is constant within each (no move at all). A single
    chain is passed to arviz-stats (which needs two) as its two halves, so its split R-hat
    compares the chain's quarters. Halves drop the middle draw of an odd-length chain, as arviz's do.
    """
    basins = np.asarray(basins)
    half = basins.shape[1] // 2
    halves = np.concatenate([basins[:, :half], basins[:, basins.shape[1] - half :]]) if half else basins
    chains = halves if basins.shape[0] == 1 else basins
    rhat = np.full(num_modes, np.nan)
    for k in range(num_modes):
        indicator = (basins == k).astype(float)
        if indicator.min() == indicator.max():
            continue
        if all(len(set(h)) == 1 for h in halves == k):  # no chain half ever enters or leaves
            rhat[k] = np.inf
            continue
        rhat[k] = float(array_stats.rhat((chains == k).astype(float), chain_axis=0, draw_axis=1, method="rank"))
    return rhat


def mixes_between_modes(transitions: np.ndarray, rhat: np.ndarray) -> bool:
    """The rule of the module docstring: every varying indicator's R-hat at most
    ``MIXING_RHAT`` and at least ``MIN_TRANSITIONS_PER_CHAIN`` transitions per chain on
    average. With one mode there is nothing to mix and the answer is True."""
    if len(rhat) < 2:
        return True
    varying = rhat[~np.isnan(rhat)]
    if varying.size == 0:  # every draw in one basin (or none) while other modes exist
        return False
    return bool(np.all(varying <= MIXING_RHAT) and np.mean(transitions) >= MIN_TRANSITIONS_PER_CHAIN)


def mixing_text(transitions: np.ndarray | None, rhat: np.ndarray | None) -> str:
    """``"4 chains, 2 transitions between modes, basin R-hat inf"`` (empty for independent draws)."""
    if transitions is None:
        return ""
    chains = len(transitions)
    varying = rhat[~np.isnan(rhat)]
    rhat_text = f", basin R-hat {_number(np.max(varying))}" if varying.size else ""
    return f"{chains} chain{'s' * (chains != 1)}, {int(np.sum(transitions))} transitions between modes{rhat_text}"


def _number(value: float) -> str:
    return "inf" if np.isinf(value) else f"{value:.3g}"


def check_mode_mass(
    method: str,
    basins: np.ndarray,
    modes: Modes,
    masses: ModeMasses,
    independent: bool = False,
    draws_ess: float | None = None,
    tests: Mapping[str, KSDTest] | None = None,
    alpha: float = 0.05,
    mass_floor: float = 0.05,
    tolerance: float = 0.05,
    unknown_tolerance: float = 0.01,
    certain: np.ndarray | None = None,
) -> ModeCheck:
    """Compare the share of ``basins (chain, draw)`` (from :func:`assign_basins`) in each of ``modes``
    with its mass in ``masses`` (from :func:`~numpyro_stein_diag.masses.mode_masses`) and judge the
    method (:func:`judge`). Shares and masses are both taken over
    the known basins: the share of the draws that lie in some mode's basin, against the mass as
    a fraction of the mass the modes hold (draws in no basin are judged by ``unknown_region``).
    Masses that were not estimated (``mass_method = "none"``) raise no flag. ``draws_ess``: see
    the module docstring (:func:`draws_ess` computes it). Draws with a chain axis
    (``independent=False``) are first judged for mixing between modes; chains that do not mix
    are judged against the masses' standard errors alone. ``tests``: the method's KSD tests
    (``{"plain": ..., "perturbed": ...}``), judged in one Holm family with the modes' tests.
    ``certain`` (like ``basins``, from :func:`~numpyro_stein_diag.basins.reached_directly`): the
    draws whose basin is certain; moves between modes are counted on those only (all by default)."""
    if len(masses) != len(modes):
        raise ValueError(
            f"masses holds {len(masses)} modes' masses for {len(modes)} modes: pass the masses "
            "that mode_masses(target, modes, rng_key) returned for these modes."
        )
    basins = np.asarray(basins)
    if basins.ndim == 1:
        basins = basins[None]
    k = len(modes)
    known_mass = float(np.sum(masses.mass))  # what the modes hold: 1 - unknown (importance), 1 (Laplace)
    known_mass = known_mass if np.isfinite(known_mass) and known_mass > 0 else 1.0
    expected, se = np.asarray(masses.mass) / known_mass, np.asarray(masses.mass_se) / known_mass
    counts = np.array([np.sum(basins == j) for j in range(k)])
    observed = counts / max(int(np.sum(counts)), 1)
    ess = basin_ess(basins, k, independent, draws_ess)
    transitions = rhat = None
    mixing = True
    if not independent:
        sure = basins if certain is None else np.where(np.reshape(certain, basins.shape), basins, -1)
        transitions, rhat = basin_transitions(sure), basin_rhat(basins, k)
        mixing = mixes_between_modes(transitions, rhat)
    check = ModeCheck(
        method,
        expected,
        se,
        observed,
        ess,
        _share_pvalues(observed, ess, expected, se, mixing, tolerance),
        float(np.mean(basins < 0)),
        (),
        transitions,
        rhat,
        mixing,
        tolerance,
    )
    return replace(check, flags=judge(check, modes, masses, tests or {}, alpha, mass_floor, unknown_tolerance))


def judge(
    check: ModeCheck,
    modes: Modes,
    masses: ModeMasses,
    tests: Mapping[str, KSDTest],
    alpha: float = 0.05,
    mass_floor: float = 0.05,
    unknown_tolerance: float = 0.01,
) -> tuple[Flag, ...]:
    """A method's flags: Holm once over the family of its tests (each mode's share test and each
    KSD test in ``tests``), then the rules of the module docstring. Masses that were not
    estimated (``masses.mass_method == "none"``) judge no share and no unknown region. ``tests``
    are keyed as in :data:`KSD_TESTS`."""
    k = len(check.expected_mass)
    names = list(tests)
    adjusted = holm(np.concatenate([check.pvalue, [tests[n].pvalue for n in names]]))
    judged = masses.estimated
    flags = _mode_flags(check, modes, adjusted[:k], alpha, mass_floor) if judged else []
    if judged and check.unknown_share > unknown_tolerance:
        flags.append(
            _method_flag(
                check.method,
                "unknown_region",
                check.unknown_share,
                float("nan"),
                f"{check.unknown_share:.1%} of the {check.method} draws lie in no known mode's basin: a mode the "
                "search did not find, or a region where the ascent did not converge.",
            )
        )
    for name, p in zip(names, adjusted[k:]):
        if p < alpha:
            test = tests[name]
            flags.append(
                _method_flag(
                    check.method,
                    "ksd_reject",
                    float(test.statistic),
                    float(p),
                    f"{check.method}: {KSD_TESTS[name]} ({name} KSD test, {test.variant}, KSD^2 = "
                    f"{test.statistic:.3g}, p {_p_text(test.pvalue)}, Holm-adjusted {_p_text(p)}).",
                )
            )
    return tuple(flags)


def _method_flag(method: str, kind: FlagKind, observed: float, pvalue: float, message: str) -> Flag:
    """A flag about the method as a whole, not one mode (``mode = -1``, no expected mass)."""
    return Flag(
        method=method,
        kind=kind,
        mode=-1,
        expected=0.0,
        expected_se=0.0,
        observed=observed,
        pvalue=pvalue,
        message=message,
    )


def _mode_flags(check: ModeCheck, modes: Modes, adjusted, alpha: float, mass_floor: float) -> list[Flag]:
    """``unverified_mode``, ``missed_mode`` and ``misweighted_mode`` flags from the modes'
    Holm-adjusted p-values."""
    expected, se, observed = check.expected_mass, check.expected_mass_se, check.observed_share
    why = (
        ""
        if check.mixing
        else (
            f" The chains do not mix between modes ({mixing_text(check.transitions, check.basin_rhat)}): the "
            "share reflects where they started more than the posterior, so it is judged against the mass's "
            "standard error alone."
        )
    )
    flags = []
    for j in range(len(expected)):
        numbers = dict(
            method=check.method,
            mode=j,
            expected=float(expected[j]),
            expected_se=float(se[j]),
            observed=float(observed[j]),
            pvalue=float(adjusted[j]),
        )
        where = modes.describe(j)
        evidence = (
            f"{f'ESS {check.ess[j]:.0f}' if check.mixing else 'mass se only'}, "
            f"off by more than {check.tolerance:.0%}: Holm-adjusted p {_p_text(adjusted[j])}"
        )
        if not (np.isfinite(expected[j]) and np.isfinite(se[j])):
            flags.append(
                Flag(
                    kind="unverified_mode",
                    message=(
                        f"{check.method}: the mass of {where} is not a finite number "
                        f"({expected[j]:.3g} +- {se[j]:.3g}), "
                        f"so its share of the draws ({observed[j]:.1%}) cannot be verified."
                    ),
                    **numbers,
                )
            )
        elif adjusted[j] >= alpha:
            continue
        elif expected[j] >= mass_floor and observed[j] < expected[j] / 4:
            flags.append(
                Flag(
                    kind="missed_mode",
                    message=(
                        f"{check.method} misses {where}: it holds {expected[j]:.1%} +- {se[j]:.1%} of the posterior "
                        f"mass but {observed[j]:.1%} of the draws ({evidence}).{why}"
                    ),
                    **numbers,
                )
            )
        else:
            flags.append(
                Flag(
                    kind="misweighted_mode",
                    message=(
                        f"{check.method} misweights {where}: {observed[j]:.1%} of the draws against an expected "
                        f"{expected[j]:.1%} +- {se[j]:.1%} of the mass ({evidence}).{why}"
                    ),
                    **numbers,
                )
            )
    return flags


def _p_text(p: float) -> str:
    """``"= 0.046"`` or ``"< 0.001"``, for sentences."""
    text = format_pvalue(p)
    return text if text.startswith("<") else f"= {text}"


def _share_pvalues(observed, ess, expected, se, mixing: bool, tolerance: float) -> np.ndarray:
    """Per-mode p-values of the interval null ``|o - M| <= tolerance``: beta-binomial for chains
    that mix (or independent draws); against the mass's standard error alone,
    ``z = (|o - M| - tolerance) / se``, for chains that do not. NaN where the mass or its se is
    not finite."""
    pvalues = np.full(len(expected), np.nan)
    for j in range(len(expected)):
        if not (np.isfinite(expected[j]) and np.isfinite(se[j])):
            continue
        if mixing:
            pvalues[j] = share_pvalue(observed[j], ess[j], expected[j], se[j], tolerance)
        else:
            excess = max(abs(observed[j] - expected[j]) - tolerance, 0.0)
            pvalues[j] = min(1.0, 2 * norm.sf(excess / max(se[j], 1e-12)))
    return pvalues


def draws_ess(draws) -> float:
    """Smallest bulk ESS over the coordinates of ``draws (chain, draw, d)`` (arviz-stats)."""
    draws = np.asarray(draws)
    if draws.shape[0] * draws.shape[1] < 4:
        return float(draws.shape[0] * draws.shape[1])
    ess = np.asarray(array_stats.ess(np.moveaxis(draws, -1, 0), chain_axis=-2, draw_axis=-1, method="bulk"))
    ess = ess[np.isfinite(ess)]
    return float(np.clip(ess.min(), 1.0, draws.shape[0] * draws.shape[1])) if ess.size else float(draws.shape[0])
