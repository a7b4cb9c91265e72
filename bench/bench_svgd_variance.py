"""Does SVGD keep the posterior's spread? The sd of the particles per coordinate over the
target's, against the dimension d and the number of particles N, for this package with the
plain median heuristic (``keep_spread=False``, the behaviour before) and with its default
(``keep_spread=True``), and for blackjax.vi.svgd and numpyro.contrib.einstein.SVGD (both the
median heuristic) in the same run; the share and the within-mode spread of annealed SVGD on a
d = 20 mixture; and the time per step against the GEMM floor. All runs: RBF kernel, Adam(0.05),
2000 steps, seed 0 unless said.

    .venv/bin/python bench/bench_svgd_variance.py [--quick]
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax

import numpyro_stein_diag as nsd
from bench.bench_svgd import gemm_floor, per_step
from numpyro_stein_diag.stein_variational import SVGDKernel, _run_chunk, _step_inputs

STEPS = 2000
STEP_SIZE = 0.05


def covariance(dim, corr):
    """Unit variances, every pair correlated ``corr``."""
    return (1.0 - corr) * np.eye(dim) + corr * np.ones((dim, dim))


def gaussian(dim, corr=0.0):
    precision = jnp.asarray(np.linalg.inv(covariance(dim, corr)), jnp.float32)
    return nsd.Target.from_potential(lambda z: 0.5 * z @ precision @ z, jnp.zeros(dim))


def sd_ratio(x):
    """Mean over coordinates of the particles' sd; every coordinate of the targets has sd 1."""
    return float(np.mean(np.std(np.asarray(x), axis=0)))


def ours(dim, corr, n, keep_spread, seed=0):
    run = nsd.svgd(
        gaussian(dim, corr),
        jax.random.PRNGKey(seed),
        n,
        STEPS,
        keep_spread=keep_spread,
        progress_bar=False,
        num_checkpoints=1,
    )
    return sd_ratio(run.particles)


def blackjax_sd(dim, corr, n, seed=0):
    import blackjax

    precision = jnp.asarray(np.linalg.inv(covariance(dim, corr)), jnp.float32)
    algo = blackjax.svgd(jax.grad(lambda z: -0.5 * z @ precision @ z), optax.adam(STEP_SIZE))
    state = algo.init(jax.random.normal(jax.random.PRNGKey(seed), (n, dim)))
    final = jax.jit(lambda s: jax.lax.scan(lambda s, _: (algo.step(s), None), s, None, length=STEPS)[0])(state)
    return sd_ratio(final.particles)


def numpyro_sd(dim, corr, n, seed=0):
    from numpyro.contrib.einstein import SVGD, RBFKernel
    from numpyro.optim import Adam

    cov = jnp.asarray(covariance(dim, corr), jnp.float32)

    def model():
        numpyro.sample("z", dist.MultivariateNormal(jnp.zeros(dim), cov))

    stein = SVGD(model, Adam(STEP_SIZE), RBFKernel(), num_stein_particles=n)
    state = stein.init(jax.random.PRNGKey(seed))
    final = jax.jit(lambda s: jax.lax.scan(lambda s, _: (stein.update(s)[0], None), s, None, length=STEPS)[0])(state)
    return sd_ratio(stein.get_params(final)["z_auto_loc"])


def mixture(dim, weight_left=0.3, offset=5.0, init_scale=3.0):
    """weight_left N(-offset e1, I) + (1 - weight_left) N(offset e1, I); starts N(0, init_scale^2 I)."""
    shift = jnp.zeros(dim).at[0].set(offset)

    def potential(z):
        return -jnp.logaddexp(
            jnp.log(weight_left) - 0.5 * jnp.sum((z + shift) ** 2),
            jnp.log1p(-weight_left) - 0.5 * jnp.sum((z - shift) ** 2),
        )

    return nsd.Target.from_potential(potential, jnp.zeros(dim), init_scale=init_scale)


def share_and_spread(x):
    """Share of particles left of 0 in the first coordinate, and the within-mode sd (each mode
    about its own mean, averaged over coordinates, weighted by the modes' counts)."""
    x = np.asarray(x)
    modes = [m for m in (x[:, 0] < 0, x[:, 0] >= 0) if m.sum() > 2]
    spread = np.average([np.std(x[m], axis=0).mean() for m in modes], weights=[m.sum() for m in modes])
    return float(np.mean(x[:, 0] < 0)), float(spread)


def step_time(x, keep_spread):
    update = SVGDKernel(gaussian(x.shape[1]), optax.adam(STEP_SIZE), nsd.RBF(), keep_spread=keep_spread)
    state = update.init(x)
    inputs = _step_inputs(nsd.plain(), jax.random.PRNGKey(0), 20, 20, STEP_SIZE)
    return per_step(lambda _: _run_chunk(update, state, inputs)[0], 20)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="d = 20 and 50 at N = 200 only")
    args = parser.parse_args(argv)
    peers_up_to = 200  # blackjax takes the full median every step; numpyro's einstein is O(N^2 d) with a large constant

    print(f"sd ratio (particles' sd / target's, mean over coordinates), {STEPS} steps of plain SVGD")
    print(f"{'target':>12} {'d':>4} {'N':>5} {'before':>7} {'after':>7} {'blackjax':>9} {'numpyro':>8} {'s':>5}")
    cells = [(20, 0.0, 200), (50, 0.0, 200), (20, 0.5, 200), (50, 0.5, 200)]
    if not args.quick:
        cells += [(d, 0.0, n) for n in (100, 1000) for d in (5, 20, 50, 100)] + [(5, 0.0, 200), (100, 0.0, 200)]
    for dim, corr, n in cells:
        start = time.perf_counter()
        peers = (
            f"{blackjax_sd(dim, corr, n):9.3f} {numpyro_sd(dim, corr, n):8.3f}"
            if n <= peers_up_to
            else f"{'-':>9} {'-':>8}"
        )
        name = "N(0, I)" if corr == 0 else f"corr {corr:g}"
        print(
            f"{name:>12} {dim:>4} {n:>5} {ours(dim, corr, n, False):7.3f} {ours(dim, corr, n, True):7.3f} {peers} "
            f"{time.perf_counter() - start:5.0f}",
            flush=True,
        )

    print(
        "\nannealed SVGD on 0.3 N(-5 e1, I) + 0.7 N(5 e1, I), d = 20, N = 200, start N(0, 3^2 I): "
        "share left of 0 (truth 0.30) / within-mode sd ratio"
    )
    for keep_spread in (False, True):
        cells = []
        for seed in range(3):
            run = nsd.svgd(
                mixture(20),
                jax.random.PRNGKey(seed),
                200,
                STEPS,
                schedule=nsd.annealed(),
                keep_spread=keep_spread,
                progress_bar=False,
                num_checkpoints=1,
            )
            cells.append("{:.3f} / {:.2f}".format(*share_and_spread(run.particles)))
        print(f"  {'after' if keep_spread else 'before':>6} (seeds 0, 1, 2): " + "   ".join(cells), flush=True)

    print("\nms per step after compilation, N = 1024 (best of 3 runs of 20 steps)")
    print(f"{'d':>4} {'before':>8} {'after':>8} {'GEMM floor':>10} {'after/before':>12}")
    for dim in (10, 50):
        x = jax.random.normal(jax.random.PRNGKey(1), (1024, dim)) * 2.0
        before, after, floor = step_time(x, False), step_time(x, True), gemm_floor(x)
        print(f"{dim:>4} {before * 1e3:8.2f} {after * 1e3:8.2f} {floor * 1e3:10.2f} {after / before:12.2f}", flush=True)


if __name__ == "__main__":
    main()
