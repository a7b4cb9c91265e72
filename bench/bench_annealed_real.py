"""Annealed SVGD on real models: finite particles, time against plain SVGD, shares against known masses.

1. eight schools, non-centred (mu ~ N(0, 5), tau ~ HalfCauchy(5)): one mode; the particles'
   mean and sd of mu and log tau against a long NUTS run (4 x 2000 draws).
2. a 3-component Gaussian mixture with a Dirichlet weight (exchangeable components): its
   6 label permutations are modes of equal mass 1/6 by symmetry; the share of particles in
   each permutation (the order of the component means) against 1/6.

Both schedules run the same particles and steps; the times include compilation.

    .venv/bin/python bench/bench_annealed_real.py [num_particles] [num_steps]
"""

import itertools
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS

import numpyro_stein_diag as nsd

Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
rng = np.random.default_rng(0)
MIX_DATA = np.concatenate([rng.normal(-4, 1, 60), rng.normal(0, 1, 90), rng.normal(5, 1, 50)])


def eight_schools():
    mu = numpyro.sample("mu", dist.Normal(0, 5))
    tau = numpyro.sample("tau", dist.HalfCauchy(5))
    with numpyro.plate("J", 8):
        theta_tilde = numpyro.sample("theta_tilde", dist.Normal(0, 1))
        numpyro.sample("obs", dist.Normal(mu + tau * theta_tilde, SIGMA), obs=Y)


def mixture():
    w = numpyro.sample("w", dist.Dirichlet(jnp.ones(3)))
    mu = numpyro.sample("mu", dist.Normal(0, 5).expand([3]))
    s = numpyro.sample("s", dist.HalfNormal(2).expand([3]))
    numpyro.sample("y", dist.MixtureSameFamily(dist.Categorical(w), dist.Normal(mu, s)), obs=MIX_DATA)


def run(target, schedule, num_particles, num_steps):
    start = time.perf_counter()
    result = nsd.svgd(target, jax.random.PRNGKey(1), num_particles, num_steps, schedule=schedule, progress_bar=False)
    return result, time.perf_counter() - start


def permutation_shares(mu):
    """Share of particles in each of the 6 orderings of the component means."""
    orders = [tuple(o) for o in np.argsort(np.asarray(mu), axis=-1).reshape(-1, 3)]
    return np.array([orders.count(p) / len(orders) for p in itertools.permutations(range(3))])


def main():
    num_particles = int(sys.argv[1]) if len(sys.argv) > 1 else 512
    num_steps = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    print(f"{num_particles} particles, {num_steps} steps, 2 cores")
    mcmc = MCMC(
        NUTS(eight_schools),
        num_warmup=1000,
        num_samples=2000,
        num_chains=4,
        chain_method="sequential",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(0))
    ref = mcmc.get_samples()
    ref_stats = (ref["mu"].mean(), ref["mu"].std(), np.log(ref["tau"]).mean(), np.log(ref["tau"]).std())
    print(
        f"eight schools NUTS: mu {ref_stats[0]:.2f} +- {ref_stats[1]:.2f}, "
        f"log tau {ref_stats[2]:.2f} +- {ref_stats[3]:.2f}"
    )
    target = nsd.Target.from_model(eight_schools)
    times = {}
    for name, schedule in (("plain", nsd.plain()), ("annealed", nsd.annealed())):
        result, times[name] = run(target, schedule, num_particles, num_steps)
        s = result.samples
        finite = all(np.isfinite(np.asarray(v)).all() for v in s.values())
        print(
            f"  {name:9s} {times[name]:6.1f} s, finite {finite}, mu {np.mean(s['mu']):.2f} +- {np.std(s['mu']):.2f}, "
            f"log tau {np.mean(np.log(s['tau'])):.2f} +- {np.std(np.log(s['tau'])):.2f}"
        )
    print(f"  annealed / plain time: {times['annealed'] / times['plain']:.2f}")

    target = nsd.Target.from_model(mixture)
    print("3-component mixture, Dirichlet weight: share per label permutation (each mode holds 1/6 = 16.7%)")
    for name, schedule in (("plain", nsd.plain()), ("annealed", nsd.annealed())):
        result, times[name] = run(target, schedule, num_particles, num_steps)
        finite = all(np.isfinite(np.asarray(v)).all() for v in result.samples.values())
        shares = permutation_shares(result.samples["mu"][0])
        print(
            f"  {name:9s} {times[name]:6.1f} s, finite {finite}, shares "
            + " ".join(f"{v:.1%}" for v in shares)
            + f", max |share - 1/6| {np.max(np.abs(shares - 1 / 6)):.1%}"
        )
    print(f"  annealed / plain time: {times['annealed'] / times['plain']:.2f}")


if __name__ == "__main__":
    main()
