"""Mode masses against closed forms: the bridge estimate from exact draws, the importance estimate
(or its Laplace fallback) without them, and the time against a NUTS run of the same posterior.

Posteriors (two well separated modes, so each basin holds its component's weight up to tails
below 1e-5):

- ``t<d>``: 0.3 N(-15 e1, I) + 0.7 t_5(15 e1, I) (multivariate t, 5 degrees of freedom), d = 20, 50, 100;
- ``gauss100``: 0.4 N(-15 e1, I) + 0.6 N(15 e1, D), D diagonal with scales 0.3 .. 3 (log-spaced), d = 100;
- ``skew10``: 0.3 N(-10 e1, I) + 0.7 (10 e1 + u), u_i iid log Gamma(2, 1) (skewed in every coordinate), d = 10.

The modes are built at their known locations (``modes._make_modes`` with the Hessian there), so
the masses are measured apart from the search. Per seed: 4 x 500 exact draws as the methods'
draws, ``mode_masses(..., draws=...)``; reported per mode: the largest |log-mass error| over the
seeds, the share of seeds with |error| <= 2 se, the largest Pareto k, the seconds (first call,
with compilation, then the median of the others); once per posterior the importance estimate
without draws (its method and log-mass error) and a 4 x 500 NUTS run (500 warm-up, sequential
chains, compilation included) with the ratio of the masses' first call to it.

    .venv/bin/python bench/bench_masses.py [--seeds N] [NAME ...]     (default: 5 seeds, every posterior)
"""

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

import numpyro_stein_diag as nsd
from numpyro_stein_diag.modes import _make_modes, curvature

NU = 5.0


def e1(d, value):
    return np.eye(d)[0] * value


def t_mixture(d):
    """0.3 N(-15 e1, I) + 0.7 t_5(15 e1, I)."""
    weights, left, right = np.array([0.3, 0.7]), e1(d, -15.0), e1(d, 15.0)

    def log_t(x):
        const = gammaln((NU + d) / 2) - gammaln(NU / 2) - 0.5 * d * jnp.log(NU * jnp.pi)
        return const - 0.5 * (NU + d) * jnp.log1p(jnp.sum((x - right) ** 2) / NU)

    def log_p(x):
        normal = -0.5 * d * jnp.log(2 * jnp.pi) - 0.5 * jnp.sum((x - left) ** 2)
        return jnp.logaddexp(jnp.log(weights[0]) + normal, jnp.log(weights[1]) + log_t(x))

    def draws(rng, n):
        normal = rng.random(n) < weights[0]
        z = rng.standard_normal((n, d))
        g = rng.chisquare(NU, n) / NU
        return np.where(normal[:, None], left + z, right + z / np.sqrt(g)[:, None])

    return log_p, draws, np.stack([left, right]), weights


def gaussian_pair(d):
    """0.4 N(-15 e1, I) + 0.6 N(15 e1, D)."""
    weights, left, right = np.array([0.4, 0.6]), e1(d, -15.0), e1(d, 15.0)
    scales = np.exp(np.linspace(np.log(0.3), np.log(3.0), d))

    def log_p(x):
        a = -0.5 * jnp.sum((x - left) ** 2)
        b = -jnp.sum(jnp.log(scales)) - 0.5 * jnp.sum(((x - right) / scales) ** 2)
        return -0.5 * d * jnp.log(2 * jnp.pi) + jnp.logaddexp(jnp.log(weights[0]) + a, jnp.log(weights[1]) + b)

    def draws(rng, n):
        normal = rng.random(n) < weights[0]
        z = rng.standard_normal((n, d))
        return np.where(normal[:, None], left + z, right + z * scales)

    return log_p, draws, np.stack([left, right]), weights


def skewed(d):
    """0.3 N(-10 e1, I) + 0.7 (10 e1 + u), u_i ~ log Gamma(2, 1): density exp(2 u - e^u) per coordinate."""
    weights, left, shift = np.array([0.3, 0.7]), e1(d, -10.0), e1(d, 10.0)

    def log_p(x):
        normal = -0.5 * d * jnp.log(2 * jnp.pi) - 0.5 * jnp.sum((x - left) ** 2)
        u = x - shift
        log_gamma = jnp.sum(2 * u - jnp.exp(u))  # Gamma(2) = 1
        return jnp.logaddexp(jnp.log(weights[0]) + normal, jnp.log(weights[1]) + log_gamma)

    def draws(rng, n):
        normal = rng.random(n) < weights[0]
        return np.where(
            normal[:, None], left + rng.standard_normal((n, d)), shift + np.log(rng.gamma(2.0, size=(n, d)))
        )

    return log_p, draws, np.stack([left, shift + np.log(2.0)]), weights


POSTERIORS = {
    "t20": lambda: t_mixture(20),
    "t50": lambda: t_mixture(50),
    "t100": lambda: t_mixture(100),
    "gauss100": lambda: gaussian_pair(100),
    "skew10": lambda: skewed(10),
}


def known_modes(target, location):
    log_p, _, hessian = curvature(target, location)
    return _make_modes(target, location, log_p, hessian)


def bench(name, seeds):
    log_p, draws, location, weights = POSTERIORS[name]()
    d = location.shape[1]
    target = nsd.Target.from_potential(lambda x: -log_p(x), jnp.zeros(d))
    modes = known_modes(target, location)
    errors, covered, khats, seconds, methods = [], [], [], [], set()
    for seed in range(seeds):
        x = draws(np.random.default_rng(seed), 2000).reshape(4, 500, d)
        start = time.perf_counter()
        m = nsd.mode_masses(target, modes, jax.random.PRNGKey(seed), draws=x)
        seconds.append(time.perf_counter() - start)
        methods.add(m.mass_method)
        errors.append(np.log(m.mass) - np.log(weights))
        covered.append(np.abs(m.mass - weights) <= 2 * m.mass_se)
        khats.append(m.pareto_k)
    errors, covered = np.array(errors), np.array(covered)
    importance = nsd.mode_masses(target, modes, jax.random.PRNGKey(0))
    start = time.perf_counter()
    nsd.nuts(target, jax.random.PRNGKey(0), num_warmup=500, num_samples=500, progress_bar=False)
    nuts_seconds = time.perf_counter() - start
    print(
        f"{name:>9} {d:4d} {'/'.join(sorted(methods)):>7} "
        f"{' '.join(f'{e:.3f}' for e in np.max(np.abs(errors), axis=0)):>13} "
        f"{' '.join(f'{c:.0%}' for c in covered.mean(axis=0)):>9} {max(khats):5.2f} "
        f"{seconds[0]:6.1f} {np.median(seconds[1:]) if seeds > 1 else np.nan:6.1f} "
        f"{importance.mass_method:>10} {' '.join(f'{e:.2f}' for e in np.log(importance.mass) - np.log(weights)):>13} "
        f"{nuts_seconds:6.1f} {seconds[0] / nuts_seconds:6.2f}",
        flush=True,
    )


def main(argv):
    seeds = 5
    if argv[:1] == ["--seeds"]:
        seeds, argv = int(argv[1]), argv[2:]
    names = argv or list(POSTERIORS)
    unknown = [n for n in names if n not in POSTERIORS]
    if unknown:
        raise SystemExit(f"unknown posterior(s) {unknown}; choose from {list(POSTERIORS)}")
    print(
        f"{'posterior':>9} {'d':>4} {'method':>7} {'max |log err|':>13} {'<= 2 se':>9} {'max k':>5} "
        f"{'s 1st':>6} {'s then':>6} {'no draws':>10} {'its log err':>13} {'NUTS s':>6} {'ratio':>6}"
    )
    for name in names:
        bench(name, seeds)


if __name__ == "__main__":
    main(sys.argv[1:])
