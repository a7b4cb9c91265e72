"""Basin assignment by the Laplace guess and checks, against full ascents of every point.

For each posterior of bench_diagnose.py: 4 NUTS chains, the modes found from them and prior
draws, then the basins of two point sets, the NUTS draws and the mass estimate's proposal
draws (2000 per mode), by `assign_basins` (the guess where clear, ascents where in doubt) and by
`assign_basins(exact=True)` (every point ascended). Reported: the share of points given the
same basin, the share of points whose basin decides a mode's only evidence (points in a basin
holding fewer than 1% of the set) given the same basin, the points ascended, and the seconds
of each (after compilation: both are run once before timing).

    .venv/bin/python bench/bench_basins.py [NAME ...]     (default: every posterior)
"""

import sys
import time

import jax
import numpy as np
from bench_diagnose import POSTERIORS, count_ascents

import numpyro_stein_diag as nsd
from numpyro_stein_diag.masses import modes_proposal, sample_proposal


def timed_basins(target, modes, points, exact):
    nsd.assign_basins(target, modes, points, exact=exact)  # compile
    with count_ascents() as counted:
        start = time.perf_counter()
        basins = nsd.assign_basins(target, modes, points, exact=exact)
        seconds = time.perf_counter() - start
    return basins, sum(counted), seconds


def main(names):
    print(
        f"{'posterior':>20} {'set':>9} {'points':>7} {'K':>2} {'same basin':>10} {'rare basins':>11} "
        f"{'ascended':>9} {'s':>6} {'full s':>7}"
    )
    for name in names:
        model, num = POSTERIORS[name]
        run = nsd.nuts(model, jax.random.PRNGKey(0), num_chains=4, num_warmup=num, num_samples=num, progress_bar=False)
        target = nsd.Target.from_model(model)
        modes = nsd.find_modes(target, run.thinned(32).reshape(-1, target.dim), jax.random.PRNGKey(1))
        weights = np.full(len(modes), 1.0 / len(modes))
        proposal, _ = sample_proposal(target, modes_proposal(modes, weights), jax.random.PRNGKey(2), 2000 * len(modes))
        for label, points in (("draws", np.asarray(run.particles)), ("proposal", np.asarray(proposal))):
            cheap, ascended, seconds = timed_basins(target, modes, points, exact=False)
            full, _, full_seconds = timed_basins(target, modes, points, exact=True)
            shares = np.array([np.mean(full == k) for k in range(len(modes))])
            rare = np.isin(full, np.flatnonzero(shares < 0.01))
            rare_text = f"{np.mean(cheap[rare] == full[rare]):.4f}" if rare.any() else "-"
            print(
                f"{name:>20} {label:>9} {len(points):7d} {len(modes):2d} {np.mean(cheap == full):10.4f} "
                f"{rare_text:>11} {ascended:9d} {seconds:6.2f} {full_seconds:7.2f}",
                flush=True,
            )


if __name__ == "__main__":
    unknown = [n for n in sys.argv[1:] if n not in POSTERIORS]
    if unknown:
        sys.exit(f"unknown posterior(s) {unknown}; choose from {list(POSTERIORS)}")
    main(sys.argv[1:] or list(POSTERIORS))
