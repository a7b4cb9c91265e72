"""diagnose(): run or take samples, find the modes, weigh them, test every method -> Report."""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Mapping
from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from numpyro.infer import MCMC

from .check import check_mode_mass, draws_ess, ksd_flags
from .ksd import ksd_test
from .modes import assign_basins, find_modes, merge_modes, mode_masses
from .nuts import nuts
from .perturbed import perturbed_ksd_test
from .repair import repair
from .report import Report
from .runs import Run
from .svgd import annealed, plain, svgd, tempered
from .target import Target

__all__ = ["diagnose", "METHODS", "run_from_samples"]

KSD_MAX_DRAWS = 1000  # draws per method the KSD tests use (thinned evenly within each chain)
KSD_BOOTSTRAP = 500
MODE_STARTS_PER_RUN = 32  # draws of each method used as extra starts for the mode search

METHODS: dict[str, Callable[[Target, jax.Array, bool], Run]] = {
    "nuts": lambda t, key, bar: nuts(t, key, num_chains=4, num_warmup=1000, num_samples=1000, progress_bar=bar),
    "svgd": lambda t, key, bar: svgd(t, key, 512, 2000, schedule=plain(), progress_bar=bar),
    "svgd_annealed": lambda t, key, bar: svgd(t, key, 512, 2000, schedule=annealed(), progress_bar=bar),
    "svgd_tempered": lambda t, key, bar: svgd(t, key, 512, 2000, schedule=tempered(langevin=1.0), progress_bar=bar),
}


def run_from_samples(target: Target, name: str, samples) -> Run:
    """A Run from what users have: an MCMC object, a DataTree with a posterior group, or a
    dict ``{site: (chain, draw, ...)}`` of constrained arrays."""
    mcmc, groups = None, {}
    if isinstance(samples, MCMC):
        mcmc, values = samples, samples.get_samples(group_by_chain=True)
    elif isinstance(samples, xr.DataTree):
        if "posterior" not in samples.children:
            raise ValueError(f"samples[{name!r}] is a DataTree without a posterior group.")
        groups = {
            g: samples[g].dataset.transpose("chain", "draw", ..., missing_dims="ignore")
            for g in ("posterior", "sample_stats") if g in samples.children
        }
        values = {k: v.values for k, v in groups["posterior"].data_vars.items()}
    elif isinstance(samples, dict):
        values = samples
    else:
        raise TypeError(
            f"samples[{name!r}] is a {type(samples).__name__}; pass an MCMC object, an ArviZ "
            "DataTree with a posterior group, or a dict {site: array (chain, draw, ...)}."
        )
    if not values:
        raise ValueError(f"samples[{name!r}] is empty: it holds no sites.")
    try:
        draws = target.unconstrain(dict(values))  # validates sites, shapes, NaN and emptiness
    except ValueError as err:
        raise ValueError(f"samples[{name!r}]: {err}") from None
    if draws.ndim != 3:
        raise ValueError(
            f"samples[{name!r}] has sample axes {draws.shape[:-1]}; pass (chain, draw, ...) arrays "
            "(add a chain axis with x[None] for a single chain or for independent draws)."
        )
    return Run(method=name, draws=draws, samples={k: np.asarray(v) for k, v in values.items()},
               mcmc=mcmc, groups=groups, independent=False)


def _thin(draws, max_draws):
    """At most ``max_draws`` draws, evenly spaced within each chain: ``(chain, draw', d)``."""
    chains, n = draws.shape[:2]
    step = max(1, -(-chains * n // max_draws))
    return draws[:, ::step]


def diagnose(
    model,
    *model_args,
    samples: dict | None = None,
    methods=("nuts", "svgd", "svgd_annealed", "svgd_tempered"),
    rng_key=None,
    canonicalize=None,
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
        ``"svgd_tempered"`` (settings in :data:`METHODS`); ``()`` runs none. A dict
        ``{name: fn(target, rng_key, progress_bar) -> Run}`` runs methods with your settings.
    canonicalize : callable, optional
        ``fn(one draw's constrained {site: value}) -> same structure``, e.g. sort mixture
        components; applied to every draw and mode, so label-switched modes count as one.

    The mode set is built once from prior draws and every method's draws, masses are
    estimated once, and each method gets a mode-mass check (chains are first judged for
    mixing between modes), a plain KSD test and, when there are at least two modes, a
    perturbed KSD test; flags are judged at 0.05 on Holm-adjusted p-values over the method's
    tests (``ksd_reject`` for the KSD tests). Each method's draws are also repaired
    so every basin holds its mass (:meth:`Report.repaired`).
    """
    rng_key = jax.random.PRNGKey(0) if rng_key is None else rng_key
    if not isinstance(methods, Mapping):
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; choose from {sorted(METHODS)}.")
        methods = {m: METHODS[m] for m in methods}
    samples = samples or {}
    if not methods and not samples:
        raise ValueError("nothing to check: pass samples={name: ...} or methods=(...).")
    clash = sorted(set(samples) & set(methods))
    if clash:
        raise ValueError(f"sample name(s) {clash} clash with methods; rename them.")
    target = Target.from_model(model, *model_args, **model_kwargs)
    k_runs, k_modes, k_mass, k_ksd, k_repair = jax.random.split(rng_key, 5)
    say = partial(print, file=sys.stderr) if progress_bar else (lambda *a, **k: None)

    runs = {name: run_from_samples(target, name, s) for name, s in samples.items()}
    for (name, method), key in zip(methods.items(), jax.random.split(k_runs, max(len(methods), 1))):
        say(f"[diagnose] running {name} ...")
        runs[name] = method(target, key, progress_bar)

    timings = {}
    start = time.perf_counter()
    say("[diagnose] searching for modes ...")
    starts = jnp.concatenate([
        _thin(run.draws, MODE_STARTS_PER_RUN).reshape(-1, target.dim) for run in runs.values()
    ])
    modes = find_modes(target, starts, k_modes)
    if canonicalize is not None:
        modes = merge_modes(target, modes, canonicalize)
    timings["modes"] = time.perf_counter() - start
    say(f"[diagnose] {len(modes)} mode(s); estimating their masses ...")
    start = time.perf_counter()
    modes = mode_masses(target, modes, k_mass, canonicalize=canonicalize)
    timings["masses"] = time.perf_counter() - start

    timings["checks"] = timings["repairs"] = 0.0
    checks, tests, perturbed, repairs = {}, {}, {}, {}
    keys = zip(jax.random.split(k_ksd, len(runs)), jax.random.split(k_repair, len(runs)))
    for (name, run), (key, key_repair) in zip(runs.items(), keys):
        say(f"[diagnose] checking {name} ...")
        start = time.perf_counter()
        basins = assign_basins(target, modes, run.draws, canonicalize=canonicalize)
        thinned = _thin(run.draws, KSD_MAX_DRAWS)
        x = thinned.reshape(-1, target.dim) if run.independent else thinned
        k_plain, k_perturbed = jax.random.split(key)
        tests[name] = ksd_test(target, x, k_plain, num_bootstrap=KSD_BOOTSTRAP)
        if len(modes) > 1:
            perturbed[name] = perturbed_ksd_test(target, x, k_perturbed, modes=modes, num_bootstrap=KSD_BOOTSTRAP)
        ksd_pvalues = [t.pvalue for t in (tests[name], perturbed.get(name)) if t is not None]
        check = check_mode_mass(name, basins, modes, independent=run.independent, family=ksd_pvalues,
                                draws_ess=None if run.independent else draws_ess(run.draws))
        flags = ksd_flags(name, tests[name], perturbed.get(name), family=check.pvalue)
        checks[name] = dataclasses.replace(check, flags=check.flags + tuple(flags))
        timings["checks"] += time.perf_counter() - start
        start = time.perf_counter()
        try:
            repairs[name] = repair(target, modes, run.draws, basins, key_repair, canonicalize=canonicalize)
        except ValueError as err:  # the audit stands without a repaired posterior; the report says why
            repairs[name] = str(err)
        timings["repairs"] += time.perf_counter() - start
    return Report.build(runs, modes, checks, tests, timings, perturbed, repairs)
