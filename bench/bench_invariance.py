"""Level and power of the KSD tests wherever the posterior sits and however wide it is.

1. ksd_test on N(c, s^2 I), d = 2, n = 1000: rejection rate at 0.05 of exact draws (level) and
   of draws 1.5x too wide (power), for c in {0, 1e3, 1e5} and s in {1e-2, 1, 1e2}.
2. perturbed_ksd_test on 0.5 N(c - 3 s e1, s^2 I) + 0.5 N(c + 3 s e1, s^2 I), d = 2, n = 1000:
   level on exact draws, power on draws of the left component only, same grid.
3. perturbed_ksd_test on the same mixture at c = 0, s = 1 in d = 20, 50, 100.

float32 cannot hold N(1e5, 0.01^2) draws (its spacing at 1e5 is 0.0078), so the c = 1e5 rows
run in float64 (``--x64``); every other row runs in the package's default float32.

    .venv/bin/python bench/bench_invariance.py [seeds] [--x64]
"""

import sys
import time

import jax

if "--x64" in sys.argv:
    jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import numpyro_stein_diag as nsd  # noqa: E402

N = 1000
BOOTSTRAP = 200
CENTRES = (0.0, 1e3, 1e5) if "--x64" in sys.argv else (0.0, 1e3)
SCALES = (1e-2, 1.0, 1e2)


def gaussian(c, s, dim=2):
    return nsd.Target.from_potential(lambda z: 0.5 * jnp.sum(((z - c) / s) ** 2), jnp.full(dim, c))


def mixture(c, s, dim=2):
    offset = jnp.zeros(dim).at[0].set(3.0 * s)

    def potential(z):
        u = (z - c) / s
        return -jnp.logaddexp(-0.5 * jnp.sum((u - offset / s) ** 2), -0.5 * jnp.sum((u + offset / s) ** 2))

    return nsd.Target.from_potential(potential, jnp.full(dim, c), init_scale=4.0 * s)


def mixture_draws(rng, c, s, dim, one_mode):
    z = rng.normal(size=(N, dim))
    z[:, 0] += -3.0 if one_mode else np.where(rng.random(N) < 0.5, -3.0, 3.0)
    return c + s * z


def rates(test, draws_level, draws_power, seeds):
    level = power = 0
    for seed in range(seeds):
        rng, key = np.random.default_rng(seed), jax.random.PRNGKey(seed)
        level += test(draws_level(rng), key).pvalue < 0.05
        power += test(draws_power(rng), key).pvalue < 0.05
    return level / seeds, power / seeds


def row(label, level, power, start):
    print(f"{label:<34} {level:6.2f} {power:6.2f} {time.perf_counter() - start:8.1f}", flush=True)


def main():
    seeds = int(next((a for a in sys.argv[1:] if not a.startswith("--")), 100))
    print(f"rejection rate at 0.05 over {seeds} seeds, n = {N}, B = {BOOTSTRAP}")
    print(f"{'case':<34} {'level':>6} {'power':>6} {'seconds':>8}")
    for c in CENTRES:
        for s in SCALES:
            start, t = time.perf_counter(), gaussian(c, s)
            level, power = rates(
                lambda x, k: nsd.ksd_test(t, x, k, num_bootstrap=BOOTSTRAP),
                lambda rng: c + s * rng.normal(size=(N, 2)),
                lambda rng: c + 1.5 * s * rng.normal(size=(N, 2)),
                seeds,
            )
            row(f"ksd_test N({c:g}, {s:g}^2 I)", level, power, start)
    for c in CENTRES:
        for s in SCALES:
            start, t = time.perf_counter(), mixture(c, s)
            modes = nsd.find_modes(t, None, jax.random.PRNGKey(0))
            level, power = rates(
                lambda x, k: nsd.perturbed_ksd_test(t, x, k, modes=modes, num_bootstrap=BOOTSTRAP),
                lambda rng: mixture_draws(rng, c, s, 2, False),
                lambda rng: mixture_draws(rng, c, s, 2, True),
                seeds,
            )
            row(f"perturbed, mixture c={c:g} s={s:g} ({len(modes)} modes)", level, power, start)
    for dim in (20, 50, 100):
        start, t = time.perf_counter(), mixture(0.0, 1.0, dim)
        modes = nsd.find_modes(t, None, jax.random.PRNGKey(0))
        level, power = rates(
            lambda x, k: nsd.perturbed_ksd_test(t, x, k, modes=modes, num_bootstrap=BOOTSTRAP),
            lambda rng: mixture_draws(rng, 0.0, 1.0, dim, False),
            lambda rng: mixture_draws(rng, 0.0, 1.0, dim, True),
            seeds,
        )
        row(f"perturbed, mixture d={dim} ({len(modes)} modes)", level, power, start)


if __name__ == "__main__":
    main()
