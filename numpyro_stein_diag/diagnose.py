"""diagnose(): run or take samples, find the modes, weigh them, test every method -> Report."""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import Mapping
from typing import Callable

import jax
import numpy as np
import xarray as xr
from numpyro.infer import MCMC
from tqdm.auto import tqdm

from .check import check_mode_mass, draws_ess, ksd_flags
from .host import split_keys
from .ksd import ksd_test
from .modes import Modes, assign_basins, find_modes, merge_modes, mode_masses, no_modes, without_masses
from .nuts import nuts
from .perturbed import perturbed_ksd_test
from .repair import Repair, repair
from .report import Report
from .runs import Run
from .stages import Stage, attempt
from .svgd import annealed, plain, svgd, tempered
from .target import Target
from .validation import InputError, check_chain_draw_axes, check_independent_names, first_draw, model_errors

__all__ = ["diagnose", "make_method", "METHODS", "METHOD_DEFAULTS", "run_from_samples"]

KSD_MAX_DRAWS = 1000  # draws per method the KSD tests use (thinned evenly within each chain)
KSD_BOOTSTRAP = 500
MODE_STARTS_PER_RUN = 32  # draws of each method used as extra starts for the mode search
RESERVED_NAMES = frozenset({"modes", "flags"})  # the report tree's own groups

METHOD_DEFAULTS = {  # the package's own methods and their default settings
    "nuts": {"num_chains": 4, "num_warmup": 1000, "num_samples": 1000},
    "svgd": {"num_particles": 512, "num_steps": 2000},
    "svgd_annealed": {"num_particles": 512, "num_steps": 2000},
    "svgd_tempered": {"num_particles": 512, "num_steps": 2000, "langevin": 1.0},
}
NUTS_SETTINGS = ("num_chains", "num_warmup", "num_samples", "chain_method", "init_spread")
SVGD_SETTINGS = ("num_particles", "num_steps", "step_size", "kernel", "optimizer", "num_checkpoints")
SCHEDULES = {"svgd": plain, "svgd_annealed": annealed, "svgd_tempered": tempered}

Method = Callable[[Target, jax.Array, bool], Run]  # (target, rng_key, progress_bar) -> Run


def make_method(name: str, **settings) -> Method:
    """The package's method ``name`` with ``settings`` over its defaults (:data:`METHOD_DEFAULTS`).

    ``"nuts"`` takes :func:`~numpyro_stein_diag.nuts.nuts`'s settings (``num_chains``,
    ``num_warmup``, ``num_samples``, ``chain_method``, ``init_spread``); the SVGD methods take
    :func:`~numpyro_stein_diag.svgd.svgd`'s (``num_particles``, ``num_steps``, ``step_size``,
    ``kernel``, ``optimizer``, ``num_checkpoints``) and their schedule's (``sigma_max``,
    ``num_noise``, ... of :func:`annealed`; ``beta_min``, ``langevin``, ... of :func:`tempered`).
    E.g. ``make_method("svgd_annealed", step_size=0.01, sigma_max=2.0)``.
    """
    if name not in METHOD_DEFAULTS:
        raise ValueError(f"unknown method {name!r}; choose from {sorted(METHOD_DEFAULTS)}.")
    settings = {**METHOD_DEFAULTS[name], **settings}
    schedule_settings = () if name == "nuts" else tuple(inspect.signature(SCHEDULES[name]).parameters)
    allowed = NUTS_SETTINGS if name == "nuts" else SVGD_SETTINGS + schedule_settings
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise ValueError(f"method {name!r} has no setting(s) {unknown}; it takes {sorted(allowed)}.")
    if name == "nuts":
        return lambda target, key, bar: nuts(target, key, progress_bar=bar, **settings)
    schedule = SCHEDULES[name](**{k: v for k, v in settings.items() if k in schedule_settings})
    run_settings = {k: v for k, v in settings.items() if k in SVGD_SETTINGS}
    return lambda target, key, bar: svgd(target, key, schedule=schedule, progress_bar=bar, method=name, **run_settings)


METHODS: dict[str, Method] = {name: make_method(name) for name in METHOD_DEFAULTS}


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
            raise TypeError(f"methods[{name!r}] is a {type(value).__name__}; pass a dict of settings for a "
                            "method of the package, or fn(target, rng_key, progress_bar) -> Run.")
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
            raise InputError(f"samples[{name!r}]: the posterior group has dims {tuple(posterior.dims)}; it needs "
                             "'chain' and 'draw' dims (arviz_base.from_dict adds them).")
        groups = {
            g: samples[g].dataset.transpose("chain", "draw", ..., missing_dims="ignore")
            for g in ("posterior", "sample_stats") if g in samples.children
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
        with model_errors(f"diagnose() was evaluating it at the draws of samples[{name!r}] (all at once; the "
                          "first draw's values shown)", lambda: first_draw(latent, 2)):
            draws = target.unconstrain(latent, num_sample_axes=2)
    except InputError as err:
        raise InputError(f"samples[{name!r}]: {err}") from None
    samples = {**{k: np.asarray(v) for k, v in values.items()}, **latent}
    return Run(method=name, draws=draws, samples=samples, mcmc=mcmc, groups=groups, independent=independent)


def _thin(draws, max_draws):
    """At most ``max_draws`` draws, evenly spaced within each chain: ``(chain, draw', d)``."""
    chains, n = draws.shape[:2]
    step = max(1, -(-chains * n // max_draws))
    return np.asarray(draws)[:, ::step]


def diagnose(
    model,
    *model_args,
    samples: dict | None = None,
    methods=("nuts", "svgd", "svgd_annealed", "svgd_tempered"),
    rng_key=None,
    canonicalize=None,
    independent=(),
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
        ``"svgd_tempered"`` (default settings in :data:`METHOD_DEFAULTS`); ``()`` runs none.
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

    The mode set is built once from prior draws and every method's draws, masses are
    estimated once, and each method gets a mode-mass check (chains are first judged for
    mixing between modes), a plain KSD test and, when there are at least two modes, a
    perturbed KSD test; flags are judged at 0.05 on Holm-adjusted p-values over the method's
    tests (``ksd_reject`` for the KSD tests). Each method's draws are also repaired
    so every basin holds its mass (:meth:`Report.repaired`).

    Every step is a :class:`~numpyro_stein_diag.stages.Stage` of ``report.stages``: a method
    that fails, a mode search that finds no mode, masses that cannot be estimated are reported
    there with the reason, never raised, and no flag rests on them (``report.complete`` is
    False when one failed). Invalid input (samples that do not fit the model, unknown methods
    or settings) still raises, naming the problem.
    """
    rng_key = jax.random.PRNGKey(0) if rng_key is None else rng_key
    methods = _methods(methods)
    samples = {} if samples is None else samples
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
        raise ValueError(f"name(s) {reserved} cannot name a method: the report uses {sorted(RESERVED_NAMES)} "
                         "for its own groups and '/' separates groups; rename them.")
    target = Target.from_model(model, *model_args, **model_kwargs)
    k_runs, k_modes, k_mass, k_ksd, k_repair = split_keys(rng_key, 5)
    num_steps = len(methods) + 2 + len(samples) + len(methods)  # runs, modes, masses, one check per method
    bar = tqdm(total=num_steps, desc="diagnose", disable=not progress_bar, leave=False)

    independent = check_independent_names(independent, samples)
    runs = {name: run_from_samples(target, name, s, name in independent) for name, s in samples.items()}
    stages = []
    for (name, method), key in zip(methods.items(), split_keys(k_runs, max(len(methods), 1))):
        bar.set_description(f"diagnose: running {name}")
        run, stage = attempt(f"run {name}", method, target, key, progress_bar)
        stages.append(stage)
        if run is not None:
            runs[name] = dataclasses.replace(run, method=name)  # flags and checks carry the name it was run as
        bar.update()

    timings = {}
    start = time.perf_counter()
    bar.set_description("diagnose: searching for modes")
    modes, stage = _search_modes(target, runs, k_modes, canonicalize)
    stages.append(stage)
    timings["modes"] = time.perf_counter() - start
    bar.update()
    bar.set_description(f"diagnose: masses of {len(modes)} mode{'s' * (len(modes) != 1)}")
    start = time.perf_counter()
    modes, stage = _estimate_masses(target, modes, k_mass, canonicalize)
    stages.append(stage)
    timings["masses"] = time.perf_counter() - start
    bar.update()

    timings["checks"] = timings["repairs"] = 0.0
    checks, tests, perturbed, repairs = {}, {}, {}, {}
    keys = zip(split_keys(k_ksd, max(len(runs), 1)), split_keys(k_repair, max(len(runs), 1)))
    for (name, run), (key, key_repair) in zip(list(runs.items()), keys):
        bar.set_description(f"diagnose: checking {name}")
        start = time.perf_counter()
        result, stage = attempt(f"check {name}", _check_method, target, modes, run, key, canonicalize)
        stages.append(stage)
        bar.update()
        timings["checks"] += time.perf_counter() - start
        if result is None:  # the report keeps the methods it could check; the stage says why not this one
            del runs[name]
            continue
        checks[name], tests[name], basins, maybe_perturbed = result
        if maybe_perturbed is not None:
            perturbed[name] = maybe_perturbed
        start = time.perf_counter()
        repairs[name] = _repair(target, modes, run, basins, key_repair, canonicalize)
        timings["repairs"] += time.perf_counter() - start
    bar.close()
    return Report.build(runs, modes, checks, tests, timings, perturbed, repairs, stages)


def _search_modes(target: Target, runs: dict[str, Run], rng_key, canonicalize) -> tuple[Modes, Stage]:
    """Modes from prior draws and every run's draws; with no mode, the empty set and the reason."""
    starts = [_thin(run.draws, MODE_STARTS_PER_RUN).reshape(-1, target.dim) for run in runs.values()]
    modes, stage = attempt("modes", find_modes, target, np.concatenate(starts) if starts else None, rng_key)
    if modes is None:
        return no_modes(target, stage.reason), stage
    if canonicalize is not None:
        merged, stage = attempt("modes", merge_modes, target, modes, canonicalize)
        if merged is None:
            return no_modes(target, stage.reason), stage
        modes = dataclasses.replace(merged, runaway=modes.runaway)
    return modes, Stage("modes", "warning", modes.runaway) if modes.runaway else stage


def _estimate_masses(target: Target, modes: Modes, rng_key, canonicalize) -> tuple[Modes, Stage]:
    """Masses of the modes, and how far to trust them: importance (ok), Laplace (warning), none (failed)."""
    estimated, stage = attempt("masses", mode_masses, target, modes, rng_key, canonicalize=canonicalize)
    if estimated is None:
        return without_masses(modes), stage
    if estimated.mass_method == "none":
        why = ("no mode was found" if len(modes) == 0 else "the log density grows above every mode found "
               "(see modes), so each basin's share of the draws is reported but not judged")
        return estimated, Stage("masses", "failed", f"not estimated: {why}")
    if estimated.mass_method == "laplace":
        return estimated, Stage("masses", "warning", (
            f"the importance weights are not reliable (Pareto k = {estimated.pareto_k:.2f} > 0.7), so the "
            "masses are the Laplace approximation's, with the gap to the importance estimate as their se"
        ))
    return estimated, stage


def _check_method(target: Target, modes: Modes, run: Run, rng_key, canonicalize):
    """One method's checks: basins, the plain and perturbed KSD tests and the mode-mass check, with
    flags judged on Holm-adjusted p-values over the method's tests."""
    basins = assign_basins(target, modes, run.draws, canonicalize=canonicalize)
    thinned = _thin(run.draws, KSD_MAX_DRAWS)
    x = thinned.reshape(-1, target.dim) if run.independent else thinned
    k_plain, k_perturbed = split_keys(rng_key)
    test = ksd_test(target, x, k_plain, num_bootstrap=KSD_BOOTSTRAP)
    perturbed = None
    if len(modes) > 1:
        perturbed = perturbed_ksd_test(target, x, k_perturbed, modes=modes, num_bootstrap=KSD_BOOTSTRAP)
    ksd_pvalues = [t.pvalue for t in (test, perturbed) if t is not None]
    check = check_mode_mass(run.method, basins, modes, independent=run.independent, family=ksd_pvalues,
                            draws_ess=None if run.independent else draws_ess(run.draws))
    flags = ksd_flags(run.method, test, perturbed, family=check.pvalue)
    return dataclasses.replace(check, flags=check.flags + tuple(flags)), test, basins, perturbed


def _repair(target: Target, modes: Modes, run: Run, basins, rng_key, canonicalize) -> Repair | str:
    """The repaired posterior, or the reason there is none (the audit stands without it)."""
    if modes.mass_method == "none" or len(modes) == 0:
        return "no repair: the modes' masses were not estimated"
    repaired, stage = attempt("repair", repair, target, modes, run.draws, basins, rng_key, canonicalize=canonicalize)
    return stage.reason if repaired is None else repaired
