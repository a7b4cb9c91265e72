"""Does the mode search find modes that are hard to reach, and weigh them right?

Rare prior mode (``--only rare``): theta ~ (1 - w) N(0, 1) + w N(12, 1), one observation
y = 12 ~ N(theta, 3.41^2): the posterior puts 75% (w = 0.01) or 23% (w = 0.001) near 12 (exact:
conjugate per component), while a user's 4 NUTS chains started near 0 stay there. Per seed: NUTS
(4 x 300 + 300, started at theta = 0.5), then diagnose(samples={"nuts": mcmc}, methods=()).
Reported: on how many seeds the far mode was found, its mass against the truth, how often the
NUTS sample was flagged, the Good-Turing chance of an unseen mode, and the audit's time against
the NUTS run's.

Student-t mixture (``--only t``, issue 24): x in R^d, d = 20 and 50, with density
0.3 N(x; -15 e1, I) + 0.7 t_5(x; +15 e1, I) (multivariate Student t, 5 degrees of freedom, identity
scale), written as a factor on an ImproperUniform site. Per seed: 4 x 500 exact draws (each from
the Normal with probability 0.3, else from the t), diagnose(samples={"exact": {"x": draws}},
methods=()). Reported: on how many seeds both modes were found (a mode within distance 1 of
-15 e1 and of +15 e1), the largest error of the t mode's mass against 0.7 and the mass methods
used, how many seeds raised a flag (every flag is a false alarm on exact draws), had a runaway
or an incomplete report (report.complete False: a failed stage or a likely unseen mode), and the
audit's time against a NUTS run of the same model (4 x 500 + 500, started at draws of the t).

    .venv/bin/python bench/bench_discovery.py [SEEDS] [--only rare|t]      (default 20 seeds, both)
"""

import argparse
import time
from collections import Counter

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


def rare_table(seeds):
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


T_WEIGHT, T_SHIFT, T_DOF = 0.7, 15.0, 5.0


def t_mixture_model(d):
    """0.3 N(-15 e1, I) + 0.7 t_5(+15 e1, I) on R^d, as a log density factor."""
    x = numpyro.sample("x", dist.ImproperUniform(dist.constraints.real_vector, (), (d,)))
    centre = jnp.zeros(d).at[0].set(T_SHIFT)
    normal = jnp.log(1 - T_WEIGHT) + dist.Normal(-centre, 1.0).log_prob(x).sum()
    student = jnp.log(T_WEIGHT) + dist.MultivariateStudentT(T_DOF, centre, jnp.eye(d)).log_prob(x)
    numpyro.factor("log_density", jnp.logaddexp(normal, student))


def t_draws(rng, shape, d):
    """Draws of t_5(+15 e1, I): a standard normal over sqrt(chi^2_5 / 5), shifted."""
    z = rng.normal(size=(*shape, d)) / np.sqrt(rng.chisquare(T_DOF, size=(*shape, 1)) / T_DOF)
    z[..., 0] += T_SHIFT
    return z


def t_mixture_draws(rng, shape, d):
    """Exact draws of :func:`t_mixture_model`: the t with probability 0.7, else N(-15 e1, I)."""
    normal = rng.normal(size=(*shape, d))
    normal[..., 0] -= T_SHIFT
    return np.where(rng.random((*shape, 1)) < T_WEIGHT, t_draws(rng, shape, d), normal)


def t_one_seed(d, seed):
    rng = np.random.default_rng(seed)
    draws = t_mixture_draws(rng, (4, 500), d)
    start = time.perf_counter()
    report = nsd.diagnose(
        t_mixture_model,
        d,
        samples={"exact": {"x": draws}},
        methods=(),
        rng_key=jax.random.PRNGKey(seed),
        progress_bar=False,
    )
    t_audit = time.perf_counter() - start
    mcmc = MCMC(
        NUTS(t_mixture_model),
        num_warmup=500,
        num_samples=500,
        num_chains=4,
        chain_method="sequential",
        progress_bar=False,
    )
    start = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(seed), d, init_params={"x": jnp.asarray(t_draws(rng, (4,), d))})
    t_nuts = time.perf_counter() - start
    centre = np.zeros(d)
    centre[0] = T_SHIFT
    location = report.modes.location
    t_mode = np.flatnonzero(np.linalg.norm(location - centre, axis=1) < 1.0)
    normal_found = bool(np.any(np.linalg.norm(location + centre, axis=1) < 1.0))
    t_mass = float(report.masses.mass[t_mode[0]]) if t_mode.size else np.nan
    stages = ", ".join(f"{step} {seconds:.1f}" for step, seconds in report.timings.items())
    print(f"d {d} seed {seed}: audit {t_audit:.1f} s ({stages}), NUTS {t_nuts:.1f} s", flush=True)
    return {
        "both": normal_found and t_mode.size > 0,
        "modes": len(report.modes),
        "mass error": abs(t_mass - T_WEIGHT),
        "mass method": report.masses.mass_method,
        "flagged": not report.ok,
        "runaway": report.modes.runaway is not None,
        "incomplete": not report.complete,
        "ratio": t_audit / t_nuts,
        "seconds": t_audit,
    }


def t_table(seeds):
    print(
        f"{'d':>3} {'both found':>10} {'modes (max)':>11} {'max |t mass - 0.7|':>19} {'mass method':>14} "
        f"{'flagged':>8} {'runaway':>8} {'incomplete':>10} {'audit / NUTS (median)':>22} {'audit s (median)':>17}"
    )
    for d in (20, 50):
        rows = [t_one_seed(d, seed) for seed in range(seeds)]
        col = {key: np.array([row[key] for row in rows]) for key in rows[0]}
        methods = ",".join(f"{m} {n}" for m, n in Counter(col["mass method"]).items())
        print(
            f"{d:3d} {int(col['both'].sum()):4d}/{seeds:<5d} {col['modes'].max():11d} "
            f"{np.nanmax(col['mass error']):19.3f} {methods:>14} {int(col['flagged'].sum()):4d}/{seeds:<3d} "
            f"{int(col['runaway'].sum()):4d}/{seeds:<3d} {int(col['incomplete'].sum()):6d}/{seeds:<3d} "
            f"{np.median(col['ratio']):22.2f} {np.median(col['seconds']):17.1f}",
            flush=True,
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seeds", nargs="?", type=int, default=20)
    parser.add_argument("--only", choices=("rare", "t"), help="run one of the two benchmarks")
    args = parser.parse_args()
    if args.only != "t":
        rare_table(args.seeds)
    if args.only != "rare":
        if args.only is None:
            print()
        t_table(args.seeds)


if __name__ == "__main__":
    main()
