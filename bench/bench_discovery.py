"""Does the mode search find a mode that prior draws rarely reach?

theta ~ (1 - w) N(0, 1) + w N(12, 1), one observation y = 12 ~ N(theta, 3.41^2): the posterior
puts 75% (w = 0.01) or 23% (w = 0.001) near 12 (exact: conjugate per component), while a
user's 4 NUTS chains started near 0 stay there. Per seed: NUTS (4 x 300 + 300, started at
theta = 0.5), then diagnose(samples={"nuts": mcmc}, methods=()). Reported: on how many seeds
the far mode was found, its mass against the truth, how often the NUTS sample was flagged, the
Good-Turing chance of an unseen mode, and the audit's time against the NUTS run's.

    .venv/bin/python bench/bench_discovery.py [SEEDS]      (default 20)
"""

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS, init_to_value
from scipy import stats

import numpyro_stein_diag as nsd

NOISE_SD = 3.41


def rare_mode_model(y, w):
    mixture = dist.MixtureSameFamily(dist.Categorical(jnp.array([1 - w, w])), dist.Normal(jnp.array([0.0, 12.0]), 1.0))
    theta = numpyro.sample("theta", mixture)
    numpyro.sample("y", dist.Normal(theta, NOISE_SD), obs=y)


def far_mass(w, y=12.0):
    """The exact posterior mass of the component at 12 (each component is conjugate)."""
    scale = np.sqrt(1.0 + NOISE_SD**2)
    near, far = (1 - w) * stats.norm.pdf(y, 0.0, scale), w * stats.norm.pdf(y, 12.0, scale)
    return far / (near + far)


def one_seed(w, seed):
    kernel = NUTS(rare_mode_model, init_strategy=init_to_value(values={"theta": 0.5}))
    mcmc = MCMC(kernel, num_warmup=300, num_samples=300, num_chains=4, chain_method="sequential", progress_bar=False)
    start = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(seed), 12.0, w)
    t_nuts = time.perf_counter() - start
    start = time.perf_counter()
    report = nsd.diagnose(
        rare_mode_model,
        12.0,
        w,
        samples={"nuts": mcmc},
        methods=(),
        rng_key=jax.random.PRNGKey(seed),
        progress_bar=False,
    )
    t_audit = time.perf_counter() - start
    far = np.flatnonzero(report.modes.location[:, 0] > 6.0)
    mass = float(report.masses.mass[far[0]]) if far.size else np.nan
    flagged = any(f.kind in ("missed_mode", "misweighted_mode") for f in report.flags)
    return far.size > 0, mass, flagged, report.modes.unseen_chance, t_audit / t_nuts


def main(seeds):
    print(
        f"{'w':>6} {'truth':>6} {'found':>7} {'max |mass - truth|':>19} {'NUTS flagged':>13} "
        f"{'unseen chance (max)':>20} {'audit / NUTS (median)':>22}"
    )
    for w in (0.01, 0.001):
        results = [one_seed(w, seed) for seed in range(seeds)]
        found, mass, flagged, unseen, ratio = (np.array(col) for col in zip(*results))
        errors = np.abs(mass[found] - far_mass(w))
        print(
            f"{w:6g} {far_mass(w):6.3f} {int(found.sum()):3d}/{seeds:<3d} "
            f"{errors.max() if errors.size else np.nan:19.3f} "
            f"{int(flagged.sum()):6d}/{seeds:<6d} {np.nanmax(unseen):20.3f} {np.median(ratio):22.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
