"""Exact draws of several posteriors raise no flag: how often diagnose() flags a correct sample.

Each seed gives 4 "chains" of 500 exact draws of each posterior (chains that mix perfectly),
checked with methods=() (mode-mass checks, plain and perturbed KSD tests, Holm at 0.05):

- mixture:     0.2 N(-6, 1) + 0.3 N(0, 1) + 0.5 N(6, 1), three modes;
- correlated:  N(0, S) in 10 dimensions, S_ij = 0.9^|i - j|;
- funnel:      Neal's funnel in 10 dimensions, v ~ N(0, 3), x_i ~ N(0, exp(v / 2)), 9 x's;
- change point: e1, e2 ~ Exponential(1), tau ~ Uniform(0, 100), 100 yearly Poisson counts with rate
  e1 before tau and e2 after (data: rates 3 before year 40 and 1 after, seed 0); exact draws by
  summing over tau's 100 unit intervals (conjugate Gamma rates in each). Its log density jumps
  along tau, so the smoothness stage should warn and no score-based check should run;
- product:     y_i ~ N(a b, 1), a, b ~ N(0, 1), 50 rows drawn with a b = 2: two mirror modes
  (a, b) and (-a, -b). Draws of one branch come from NUTS started at its mode (4 x 500 + 2500,
  thinned by 5, pooled and shuffled), each point mirrored with probability 1/2; they are passed
  as independent draws (independent=["exact"]).

Reported per posterior over seeds: seeds with any flag (report.ok False), flags by kind, seeds with
report.complete False, the smoothness and modes stages' statuses, the most modes found and the
median seconds of one diagnose() call.

    .venv/bin/python bench/bench_false_alarm.py [SEEDS]      (default 20)
"""

import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS
from scipy.special import gammaln, logsumexp

import numpyro_stein_diag as nsd

CHAINS, DRAWS = 4, 500
WEIGHTS, LOCS = np.array([0.2, 0.3, 0.5]), np.array([-6.0, 0.0, 6.0])
COVARIANCE = 0.9 ** np.abs(np.subtract.outer(np.arange(10), np.arange(10)))
YEARS = 100


def mixture_model():
    mixture = dist.MixtureSameFamily(dist.Categorical(jnp.asarray(WEIGHTS)), dist.Normal(jnp.asarray(LOCS), 1.0))
    numpyro.sample("x", mixture)


def mixture_draws(rng):
    return {"x": LOCS[rng.choice(3, size=(CHAINS, DRAWS), p=WEIGHTS)] + rng.normal(size=(CHAINS, DRAWS))}


def correlated_model():
    numpyro.sample("x", dist.MultivariateNormal(jnp.zeros(10), jnp.asarray(COVARIANCE)))


def correlated_draws(rng):
    return {"x": rng.normal(size=(CHAINS, DRAWS, 10)) @ np.linalg.cholesky(COVARIANCE).T}


def funnel_model():
    v = numpyro.sample("v", dist.Normal(0, 3))
    numpyro.sample("x", dist.Normal(0, jnp.exp(v / 2)).expand([9]))


def funnel_draws(rng):
    v = rng.normal(0, 3, size=(CHAINS, DRAWS))
    return {"v": v, "x": rng.normal(size=(CHAINS, DRAWS, 9)) * np.exp(v / 2)[..., None]}


def yearly_counts(seed=0):
    """100 years of counts, rate 3 before year 40 and 1 after."""
    return np.random.default_rng(seed).poisson(np.where(np.arange(YEARS) < 40, 3.0, 1.0))


def change_point_model(y):
    e1 = numpyro.sample("e1", dist.Exponential(1.0))
    e2 = numpyro.sample("e2", dist.Exponential(1.0))
    tau = numpyro.sample("tau", dist.Uniform(0, YEARS))
    numpyro.sample("obs", dist.Poisson(jnp.where(jnp.arange(YEARS) < tau, e1, e2)), obs=y)


def change_point_draws(rng, y):
    """Exact draws: the interval k < tau <= k + 1 with probability p(y, interval k), then tau uniform in
    it and the rates from their Gamma posteriors. In interval k, years 0..k (n1 = k + 1 of them, S1
    counts) have rate e1, so an Exponential(1) prior gives e1 ~ Gamma(S1 + 1, n1 + 1), likewise e2,
    and p(y, interval k) is proportional to Gamma(S1 + 1) / (n1 + 1)^(S1 + 1) Gamma(S2 + 1) / (n2 + 1)^(S2 + 1)."""
    k = np.arange(YEARS)
    s1 = np.concatenate([[0], np.cumsum(y)])[k + 1]
    n1, n2, s2 = k + 1, YEARS - k - 1, y.sum() - s1
    log_evidence = gammaln(s1 + 1) - (s1 + 1) * np.log(n1 + 1) + gammaln(s2 + 1) - (s2 + 1) * np.log(n2 + 1)
    shape = (CHAINS, DRAWS)
    interval = rng.choice(YEARS, shape, p=np.exp(log_evidence - logsumexp(log_evidence)))
    return {
        "e1": rng.gamma(s1[interval] + 1) / (n1[interval] + 1),
        "e2": rng.gamma(s2[interval] + 1) / (n2[interval] + 1),
        "tau": interval + rng.random(shape),
    }


PRODUCT_ROWS, PRODUCT_THIN = 50, 5


def product_model(y):
    a = numpyro.sample("a", dist.Normal(0, 1))
    b = numpyro.sample("b", dist.Normal(0, 1))
    numpyro.sample("y", dist.Normal(a * b, 1), obs=y)


def product_data():
    return np.random.default_rng(0).normal(2.0, 1.0, PRODUCT_ROWS)


@cache
def product_sampler():
    """One MCMC object for every seed, so NUTS is compiled once."""
    return MCMC(
        NUTS(product_model),
        num_warmup=500,
        num_samples=DRAWS * PRODUCT_THIN,  # 500 per chain after thinning
        thinning=PRODUCT_THIN,
        num_chains=CHAINS,
        chain_method="sequential",
        progress_bar=False,
    )


def product_draws(rng, y):
    """Draws of the branch a, b > 0 by NUTS from its mode (a = b = sqrt(2), where a b = 2 meets the
    prior's peak), pooled and shuffled; each is mirrored to (-a, -b) with probability 1/2, since the
    posterior is symmetric under that map and its two branches are separated by a deep valley."""
    mcmc = product_sampler()
    start = jnp.full(CHAINS, np.sqrt(2.0))
    mcmc.run(jax.random.PRNGKey(int(rng.integers(2**31))), y, init_params={"a": start, "b": start})
    a, b = (np.asarray(mcmc.get_samples()[site]) for site in ("a", "b"))
    order = rng.permutation(a.size)
    sign = np.where(rng.random(a.size) < 0.5, -1.0, 1.0)
    return {"a": (sign * a[order]).reshape(CHAINS, DRAWS), "b": (sign * b[order]).reshape(CHAINS, DRAWS)}


@dataclass(frozen=True)
class Posterior:
    name: str
    model: Callable
    args: tuple
    draws: Callable  # draws(rng, *args) -> {site: (CHAINS, DRAWS, ...)}
    independent: bool = False


POSTERIORS = (
    Posterior("mixture", mixture_model, (), mixture_draws),
    Posterior("correlated", correlated_model, (), correlated_draws),
    Posterior("funnel", funnel_model, (), funnel_draws),
    Posterior("change point", change_point_model, (yearly_counts(),), change_point_draws),
    Posterior("product", product_model, (product_data(),), product_draws, independent=True),
)


def one_seed(posterior, seed):
    draws = posterior.draws(np.random.default_rng(seed), *posterior.args)
    start = time.perf_counter()
    report = nsd.diagnose(
        posterior.model,
        *posterior.args,
        samples={"exact": draws},
        methods=(),
        independent=["exact"] if posterior.independent else (),
        rng_key=jax.random.PRNGKey(seed),
        progress_bar=False,
    )
    seconds = time.perf_counter() - start
    stages = {step: report.stage(step) for step in ("smoothness", "modes")}
    row = {
        "flags": [f.kind for f in report.flags],
        "complete": report.complete,
        "modes": len(report.modes),
        "smoothness": stages["smoothness"].status if stages["smoothness"] else "absent",
        "modes stage": stages["modes"].status if stages["modes"] else "absent",
        "seconds": seconds,
    }
    print(f"{posterior.name} seed {seed}: {row}", flush=True)
    return row


def counts(values):
    return ", ".join(f"{value} {n}" for value, n in Counter(values).most_common()) or "-"


def main():
    seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    rows = {p.name: [one_seed(p, seed) for seed in range(seeds)] for p in POSTERIORS}
    print(
        f"\n{'posterior':<13} {'flagged':>8} {'incomplete':>10} {'modes (max)':>11} {'s/seed':>7}  "
        f"{'smoothness':<18} {'modes stage':<18} flags by kind"
    )
    for name, results in rows.items():
        flagged = sum(bool(r["flags"]) for r in results)
        incomplete = sum(not r["complete"] for r in results)
        print(
            f"{name:<13} {flagged:4d}/{seeds:<3d} {incomplete:6d}/{seeds:<3d} {max(r['modes'] for r in results):11d} "
            f"{np.median([r['seconds'] for r in results]):7.1f}  {counts(r['smoothness'] for r in results):<18} "
            f"{counts(r['modes stage'] for r in results):<18} {counts(k for r in results for k in r['flags'])}"
        )


if __name__ == "__main__":
    main()
