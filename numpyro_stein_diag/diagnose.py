"""diagnose(): run or take samples, find the modes, weigh them, test every method -> Report."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from numbers import Integral

import jax
import numpy as np
import xarray as xr
from numpyro.infer import MCMC

from .audit import MethodAudit, audit
from .basins import assign_basins
from .discovery import UNSEEN_LIMIT, posterior_starts
from .host import split_keys
from .masses import ModeMasses, mode_masses, without_masses
from .modes import ASCENT_CHUNK, Modes, find_modes, merge_modes, no_modes
from .nuts import nuts
from .repair import repair
from .report import Report
from .runs import Run
from .smoothness import NUM_MOVES, Jumps, find_jumps
from .stages import StageLog
from .stein_variational import annealed, plain, svgd, tempered
from .target import Target
from .validation import InputError, check_chain_draw_axes, check_independent_names, first_draw, model_errors

__all__ = ["diagnose", "make_method", "run_from_samples"]

MODE_STARTS_PER_RUN = 32  # draws of each method used as extra starts for the mode search
MIN_PRIOR_STARTS = 16  # prior draws among the search's first starts, and more to fill its last chunk of ascents
SEARCH_CHUNK = 256  # starts per further round of the search
# unknown mass above which the search goes on from the proposal draws in no basin: below it they
# are the far tails of a proposal (a tenth of a percent is also far below any flag's 5%)
UNKNOWN_SEARCH = 1e-3
RESERVED_NAMES = frozenset({"modes", "flags"})  # the report tree's own groups

METHOD_NAMES = ("nuts", "svgd", "svgd_annealed", "svgd_tempered")  # the package's own methods
SCHEDULES = {"svgd": plain, "svgd_annealed": annealed, "svgd_tempered": tempered}
# settings where a method differs from its function's defaults: tempered SVGD adds Langevin
# noise, which lets particles cross between modes while beta is small
METHOD_DEFAULTS = {"svgd_tempered": {"langevin": 1.0}}

Method = Callable[[Target, jax.Array, bool], Run]  # (target, rng_key, progress_bar) -> Run


def _settings(fn, fixed) -> tuple[str, ...]:
    """The keyword settings of ``fn`` a user may choose (those not in ``fixed``)."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(n for n, p in inspect.signature(fn).parameters.items() if p.kind in kinds and n not in fixed)


NUTS_SETTINGS = _settings(nuts, {"model_or_target", "rng_key", "progress_bar"})
SVGD_SETTINGS = _settings(svgd, {"target", "rng_key", "schedule", "init", "progress_bar", "method"})


def make_method(name: str, **settings) -> Method:
    """The package's method ``name`` with ``settings`` over its defaults.

    ``"nuts"`` takes :func:`~numpyro_stein_diag.nuts.nuts`'s settings (``num_chains``,
    ``num_warmup``, ``num_samples``, ``chain_method``, ``init_spread``); the SVGD methods take
    :func:`~numpyro_stein_diag.stein_variational.svgd`'s (``num_particles``, ``num_steps``, ``step_size``,
    ``kernel``, ``optimizer``, ``num_checkpoints``) and their schedule's (``sigma_max``,
    ``num_noise``, ... of :func:`annealed`; ``beta_min``, ``langevin``, ... of :func:`tempered`).
    The defaults are those functions' own, except :data:`METHOD_DEFAULTS`.
    E.g. ``make_method("svgd_annealed", step_size=0.01, sigma_max=2.0)``.
    """
    if name not in METHOD_NAMES:
        raise ValueError(f"unknown method {name!r}; choose from {sorted(METHOD_NAMES)}.")
    settings = {**METHOD_DEFAULTS.get(name, {}), **settings}
    schedule_settings = () if name == "nuts" else _settings(SCHEDULES[name], ())
    allowed = NUTS_SETTINGS if name == "nuts" else SVGD_SETTINGS + schedule_settings
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise ValueError(f"method {name!r} has no setting(s) {unknown}; it takes {sorted(allowed)}.")
    if name == "nuts":
        return lambda target, key, bar: nuts(target, key, progress_bar=bar, **settings)
    schedule = SCHEDULES[name](**{k: v for k, v in settings.items() if k in schedule_settings})
    run_settings = {k: v for k, v in settings.items() if k in SVGD_SETTINGS}
    return lambda target, key, bar: svgd(target, key, schedule=schedule, progress_bar=bar, method=name, **run_settings)


METHODS: dict[str, Method] = {name: make_method(name) for name in METHOD_NAMES}


def _methods(methods) -> dict[str, Method]:
    """``diagnose(methods=...)`` as ``{name: Method}``: names, or a dict of Methods or of settings."""
    if not isinstance(methods, Mapping):
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; choose from {sorted(METHODS)}.")
        return {m: METHODS[m] for m in methods}
    out = {}
    for name, value in methods.items():
        if isinstance(value, Mapping):
            out[name] = make_method(name, **value)
        elif callable(value):
            out[name] = value
        else:
            raise TypeError(
                f"methods[{name!r}] is a {type(value).__name__}; pass a dict of settings for a "
                "method of the package, or fn(target, rng_key, progress_bar) -> Run."
            )
    return out


def run_from_samples(target: Target, name: str, samples, independent: bool = False) -> Run:
    """A Run from what users have: an MCMC object, a DataTree with a posterior group, or a
    dict ``{site: (chain, draw, ...)}`` of constrained arrays.

    ``independent``: the draws are independent (exact draws, a predictive's draws given as one
    chain), not Markov chains: the checks then use ESS = n and no mixing judgement. A DataTree
    can also say so itself with ``posterior.attrs["independent"] = 1`` (as the report writes it).
    The input is checked by :mod:`~numpyro_stein_diag.validation` (whose docstring has the rules
    for the (chain, draw) axes; integer draws are cast to float); an error the model raises while
    it is evaluated at the draws comes back as a ``ModelError`` that names this sample.
    """
    mcmc, groups = None, {}
    if isinstance(samples, MCMC):
        mcmc, values = samples, samples.get_samples(group_by_chain=True)
    elif isinstance(samples, xr.DataTree):
        if "posterior" not in samples.children:
            raise InputError(f"samples[{name!r}] is a DataTree without a posterior group.")
        posterior = samples["posterior"].dataset
        if not {"chain", "draw"} <= set(posterior.dims):
            raise InputError(
                f"samples[{name!r}]: the posterior group has dims {tuple(posterior.dims)}; it needs "
                "'chain' and 'draw' dims (arviz_base.from_dict adds them)."
            )
        groups = {
            g: samples[g].dataset.transpose("chain", "draw", ..., missing_dims="ignore")
            for g in ("posterior", "sample_stats")
            if g in samples.children
        }
        values = {k: v.values for k, v in groups["posterior"].data_vars.items()}
        independent = independent or bool(posterior.attrs.get("independent", False))
    elif isinstance(samples, dict):
        values = samples
    else:
        raise TypeError(
            f"samples[{name!r}] is a {type(samples).__name__}; pass an MCMC object, an ArviZ "
            "DataTree with a posterior group, or a dict {site: array (chain, draw, ...)}."
        )
    if not values:
        raise InputError(f"samples[{name!r}] is empty: it holds no sites.")
    try:
        latent, axes = target.validate_samples(dict(values), num_sample_axes=2)
        site, shape = next(iter(target.site_shapes.items()))
        check_chain_draw_axes(axes, name, site, shape, independent, axes_named=not isinstance(samples, dict))
        with model_errors(
            f"diagnose() was evaluating it at the draws of samples[{name!r}] (all at once; the "
            "first draw's values shown)",
            lambda: first_draw(latent, 2),
        ):
            draws = target.unconstrain(latent, num_sample_axes=2)
    except InputError as err:
        raise InputError(f"samples[{name!r}]: {err}") from None
    samples = {**{k: np.asarray(v) for k, v in values.items()}, **latent}
    return Run(method=name, draws=draws, samples=samples, mcmc=mcmc, groups=groups, independent=independent)


def diagnose(
    model,
    *model_args,
    samples: dict | None = None,
    methods=("nuts", "svgd", "svgd_annealed", "svgd_tempered"),
    rng_key=None,
    canonicalize=None,
    independent=(),
    search_budget: int = 1024,
    progress_bar: bool = True,
    **model_kwargs,
) -> Report:
    """Check posterior samples of ``model(*model_args, **model_kwargs)`` for missed and misweighted modes.

    Parameters
    ----------
    samples : dict, optional
        ``{name: MCMC | DataTree | {site: (chain, draw, ...)}}``: samples you already have;
        each name becomes a method in the report.
    methods : tuple of str, or dict
        The package's own runs to add: any of ``"nuts"``, ``"svgd"``, ``"svgd_annealed"``,
        ``"svgd_tempered"`` (with their functions' defaults, see :func:`make_method`); ``()`` runs none.
        A dict sets them: ``{"svgd_annealed": {"step_size": 0.01, "sigma_max": 2.0}}`` (see
        :func:`make_method`), or ``{name: fn(target, rng_key, progress_bar) -> Run}`` for your own.
        A method that fails is reported as a failed stage; the others are still checked.
    canonicalize : callable, optional
        ``fn(one draw's constrained {site: value}) -> same structure``, e.g. sort mixture
        components; applied to every draw and mode, so label-switched modes count as one.
    independent : collection of str, optional
        Names of ``samples`` whose draws are independent rather than Markov chains, e.g. exact
        draws or ``MixtureGuidePredictive`` draws given as one chain ``{"x": (1, n)}``: their
        mode-mass check uses ESS = n and no mixing judgement, their KSD tests the multinomial
        bootstrap. Without it, each chain (one included) is judged by its split R-hat and its
        transitions between modes. A dict's arrays with more chains than draws are refused as
        swapped (chain, draw) axes unless declared here (see :mod:`~numpyro_stein_diag.validation`).
    search_budget : int
        Ascents the mode search may add, 256 at a time, while it says it may be incomplete (its
        Good-Turing chance of an unseen mode above 5%); 0 searches once.

    The mode set is built once from prior draws and every method's draws (and grows where the
    search or the masses say it may be incomplete), masses are estimated once, and each method
    gets a mode-mass check (chains are first judged for mixing between modes), a plain KSD
    test and, when there are at least two modes, a perturbed KSD test; flags are judged at 0.05
    on Holm-adjusted p-values over the method's tests (``ksd_reject`` for the KSD tests). Each
    method's draws are also repaired so every basin holds its mass (:meth:`Report.repaired`).

    Every step is a :class:`~numpyro_stein_diag.stages.Stage` of ``report.stages``: a method
    that fails, a mode search that finds no mode, masses that cannot be estimated are reported
    there with the reason, never raised, and no flag rests on them (``report.complete`` is
    False when one failed). Invalid input (samples that do not fit the model, unknown methods
    or settings) still raises, naming the problem.
    """
    rng_key = jax.random.PRNGKey(0) if rng_key is None else rng_key
    if not isinstance(search_budget, Integral) or search_budget < 0:
        raise ValueError(f"search_budget is a number of ascents, 0 or more; got {search_budget!r}.")
    methods = _methods(methods)
    samples = {} if samples is None else samples
    _check_names(samples, methods)
    target = Target.from_model(model, *model_args, **model_kwargs)
    k_runs, k_jumps, k_modes, k_mass, k_ksd, k_repair = split_keys(rng_key, 6)
    num_audits = len(samples) + len(methods)
    log = StageLog(total=len(methods) + 3 + 2 * num_audits, progress_bar=progress_bar)

    independent = check_independent_names(independent, samples)
    runs = {name: run_from_samples(target, name, s, name in independent) for name, s in samples.items()}
    for (name, method), key in zip(methods.items(), split_keys(k_runs, max(len(methods), 1))):
        with log.stage("run", f"running {name}", method=name):
            # flags and checks carry the name it was run as
            runs[name] = dataclasses.replace(method(target, key, progress_bar), method=name)

    jumps = _find_jumps(target, runs, k_jumps, log)
    modes = _search_modes(target, runs, k_modes, canonicalize, log, jumps, search_budget)
    modes, masses, basins = _estimate_masses(target, modes, runs, k_mass, canonicalize, log)
    audits = {}
    keys = zip(split_keys(k_ksd, max(len(runs), 1)), split_keys(k_repair, max(len(runs), 1)))
    for (name, run), (key, key_repair) in zip(runs.items(), keys):
        with log.stage("check", f"checking {name}", method=name) as outcome:
            audits[name] = audit(target, modes, masses, run, key, canonicalize, not jumps, basins.get(name))
            if jumps:
                outcome.warn(f"no KSD test: the log density jumps along {', '.join(jumps.sites)} (see smoothness)")
        if name in audits:  # the report keeps the methods it could check; the stage says why not the others
            audits[name] = _repair(target, modes, masses, audits[name], key_repair, canonicalize, log)
    return Report.build(modes, masses, audits, log.close())


def _check_names(samples, methods) -> None:
    """Refuse what cannot name a method of the report, and a report with nothing in it."""
    if isinstance(samples, MCMC | xr.DataTree) or not isinstance(samples, Mapping):  # a DataTree is a Mapping too
        raise TypeError(
            f"samples is a {type(samples).__name__}; pass a dict that names it, e.g. "
            f"samples={{'nuts': {'mcmc' if isinstance(samples, MCMC) else 'my_samples'}}}."
        )
    if not methods and not samples:
        raise ValueError("nothing to check: pass samples={name: ...} or methods=(...).")
    clash = sorted(set(samples) & set(methods))
    if clash:
        raise ValueError(f"sample name(s) {clash} clash with methods; rename them.")
    reserved = sorted(n for n in [*samples, *methods] if n in RESERVED_NAMES or "/" in n)
    if reserved:
        raise ValueError(
            f"name(s) {reserved} cannot name a method: the report uses {sorted(RESERVED_NAMES)} "
            "for its own groups and '/' separates groups; rename them."
        )


def _find_jumps(target: Target, runs: dict[str, Run], rng_key, log: StageLog) -> Jumps:
    """The sites along which the log density jumps, judged from every run's draws; the stage
    warns when there are any (the score-based checks do not apply)."""
    jumps = Jumps((), (), (), 0)
    with log.stage("smoothness", "checking that the log density is smooth") as outcome:
        draws = [run.thinned(NUM_MOVES).reshape(-1, target.dim) for run in runs.values()]
        if draws:
            jumps = find_jumps(target, np.concatenate(draws), rng_key)
        if jumps:
            outcome.warn(jumps.message)
    return jumps


def _search_modes(
    target: Target,
    runs: dict[str, Run],
    rng_key,
    canonicalize,
    log: StageLog,
    jumps: Jumps | None = None,
    search_budget: int = 0,
) -> Modes:
    """Modes from starts like the posterior's, prior draws and every run's draws, then more starts
    while the search may be incomplete (:func:`_search_further`); with no mode, the empty set (the
    stage says why). The stage warns when ascents ran off above every mode or ended at degenerate
    points, or when the search may have missed a mode (Good-Turing chance above ``UNSEEN_LIMIT``).
    A log density that ``jumps`` is not searched: ascents see only its smooth parts."""
    k_starts, k_prior, k_more = split_keys(rng_key, 3)
    starts = [run.thinned(MODE_STARTS_PER_RUN).reshape(-1, target.dim) for run in runs.values()]
    modes = None
    with log.stage("modes", "searching for modes") as outcome:
        if jumps:
            raise ValueError(
                f"not run: the log density jumps along {', '.join(jumps.sites)} (see smoothness), and an "
                "ascent sees only its smooth parts"
            )
        caveats = []
        try:  # a help to the search, not a condition of it
            starts.append(posterior_starts(target, k_starts))
        except Exception as err:  # noqa: BLE001 - reported in the stage, and the search goes on
            caveats.append(
                f"no starts like the posterior's ({type(err).__name__}: {err}); the search started "
                "from prior draws and the methods' draws only"
            )
        starts = np.concatenate(starts) if starts else np.zeros((0, target.dim))
        modes = find_modes(target, starts, k_prior, num_prior_starts=_num_prior_starts(len(starts)))
        modes = _canonical(target, modes, canonicalize)
        modes = _search_further(target, modes, k_more, search_budget, canonicalize)
        caveats += [found.message for found in (modes.runaway, modes.degenerate) if found is not None]
        if modes.unseen_chance > UNSEEN_LIMIT:
            caveats.append(
                f"the search may be incomplete: {np.sum(modes.start_counts == 1)} of {len(modes)} modes were "
                f"reached by a single one of {int(np.sum(modes.start_counts))} converged ascents, so one more "
                f"start would find a mode not yet seen with chance about {modes.unseen_chance:.0%} (Good-Turing)"
            )
        if caveats:
            outcome.warn("; ".join(caveats))
    return no_modes(target) if outcome.status == "failed" else modes


def _num_prior_starts(num_starts: int) -> int:
    """Prior starts to add to ``num_starts`` others: ``MIN_PRIOR_STARTS``, and as many more as
    fill the last chunk of ``ASCENT_CHUNK`` ascents (a chunk costs as much with copies of one
    start as padding: 33 starts and 31 prior draws cost what 33 and 16 would)."""
    return -(-(num_starts + MIN_PRIOR_STARTS) // ASCENT_CHUNK) * ASCENT_CHUNK - num_starts


def _canonical(target: Target, modes: Modes, canonicalize) -> Modes:
    return modes if canonicalize is None else merge_modes(target, modes, canonicalize)


def _search_further(target: Target, modes: Modes, rng_key, search_budget: int, canonicalize) -> Modes:
    """While the search may be incomplete (Good-Turing chance of an unseen mode above
    ``UNSEEN_LIMIT``), up to ``search_budget`` more ascents, ``SEARCH_CHUNK`` at a time (one
    compiled chunk of ascents): half starts like the posterior's, half prior draws (the init box
    for a potential). Each chunk either finds new modes or adds converged ascents to those known,
    which lowers the chance it estimates."""
    for key in split_keys(rng_key, max(search_budget // SEARCH_CHUNK, 1))[: search_budget // SEARCH_CHUNK]:
        if not modes.unseen_chance > UNSEEN_LIMIT:
            break
        k_posterior, k_prior = split_keys(key)
        try:
            posterior_like = posterior_starts(target, k_posterior, num_starts=SEARCH_CHUNK // 2)
        except Exception:  # noqa: BLE001 - the modes stage already says why there are none
            posterior_like = np.zeros((0, target.dim))
        prior = np.asarray(target.initial_points(k_prior, SEARCH_CHUNK - len(posterior_like)))
        more = np.concatenate([posterior_like, prior])
        modes = _canonical(target, find_modes(target, more, known=modes), canonicalize)
    return modes


def _estimate_masses(
    target: Target, modes: Modes, runs: dict[str, Run], rng_key, canonicalize, log: StageLog
) -> tuple[Modes, ModeMasses, dict[str, np.ndarray]]:
    """Masses of the modes from the runs' draws (all but the package's SVGD runs), and how far to
    trust them: bridge or importance (ok), Laplace (warning), none (failed); with them the basins
    of every run's draws (assigned once here, for the masses and the checks). Proposal draws that
    land in no known basin are where an unseen mode would show, even with little weight (a
    proposal fitted to one mode's draws barely reaches another): when they hold more than
    ``UNKNOWN_SEARCH`` of the mass, the search goes on from them (one chunk of ascents) and, if it
    finds modes, the masses and basins are made again with them (returned with the masses).
    Unknown mass above ``UNSEEN_LIMIT`` that stays unexplained makes the stage a warning and the
    report incomplete."""
    masses, basins = without_masses(len(modes)), {}
    with log.stage("masses", f"masses of {len(modes)} mode{'s' * (len(modes) != 1)}") as outcome:
        # SVGD's particles are what is being audited (their spread shrinks in high dimensions), so
        # only chains and samples users bring stand for the posterior within each basin
        used = [name for name in runs if name not in SCHEDULES]
        k_first, k_again = split_keys(rng_key)
        basins = _basins_of_runs(target, modes, runs, canonicalize)
        masses = _masses(target, modes, runs, basins, used, k_first, canonicalize)
        if masses.estimated and masses.unknown_mass > UNKNOWN_SEARCH and len(masses.unseen_starts):
            more = _canonical(target, find_modes(target, masses.unseen_starts, known=modes), canonicalize)
            if len(more) > len(modes):  # the modes change only with the masses and basins that go with them
                basins = _basins_of_runs(target, more, runs, canonicalize)
                masses = _masses(target, more, runs, basins, used, k_again, canonicalize)
                modes = more
        if not masses.estimated:
            why = (
                "the mode search found no mode (see modes)"
                if len(modes) == 0
                else "the log density grows above every mode found "
                "(see modes), so each basin's share of the draws is reported but not judged"
            )
            outcome.fail(f"not estimated: {why}")
        else:
            caveats = [masses.fallback] if masses.fallback else []
            if masses.mass_method == "laplace":
                caveats.append(
                    f"the importance weights are not reliable (Pareto k = {masses.pareto_k:.2f} > 0.7), so the "
                    "masses are the Laplace approximation's, with the gap to the importance estimate as their se"
                )
            if masses.unknown_mass > UNSEEN_LIMIT:
                caveats.append(
                    f"{masses.unknown_mass:.0%} of the mass lies in no known mode's basin, and ascents from there "
                    "found no mode: the search may be incomplete"
                )
            if caveats:
                outcome.warn("; ".join(caveats))
    return modes, masses, basins


def _basins_of_runs(target: Target, modes: Modes, runs: dict[str, Run], canonicalize) -> dict[str, np.ndarray]:
    """The basin of every draw of every run, ``{name: (chain, draw)}``."""
    return {name: assign_basins(target, modes, run.draws, canonicalize=canonicalize) for name, run in runs.items()}


def _masses(target, modes, runs, basins, used: list[str], rng_key, canonicalize) -> ModeMasses:
    """:func:`~numpyro_stein_diag.masses.mode_masses` from the draws of the runs ``used`` (none: importance)."""
    draws = [runs[name].draws for name in used] or None
    draw_basins = [basins[name] for name in used] or None
    return mode_masses(target, modes, rng_key, canonicalize=canonicalize, draws=draws, draw_basins=draw_basins)


def _repair(
    target: Target, modes: Modes, masses: ModeMasses, method: MethodAudit, rng_key, canonicalize, log: StageLog
) -> MethodAudit:
    """The audit with its repaired posterior; a repair that cannot be made is a warning (the audit
    stands without it)."""
    name = method.run.method
    with log.stage("repair", f"repairing {name}", method=name, on_error="warning") as outcome:
        if not masses.estimated or len(modes) == 0:
            outcome.warn("no repair: the modes' masses were not estimated")
        else:
            method = dataclasses.replace(
                method,
                repair=repair(
                    target, modes, masses, method.run.draws, method.basins, rng_key, canonicalize=canonicalize
                ),
            )
    return method
