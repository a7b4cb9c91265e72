"""Time per SVGD step after compilation, standard Gaussian, median bandwidth, one run:
this package against blackjax.vi.svgd and numpyro.contrib.einstein.SVGD, and against a bare
fixed-bandwidth GEMM update (the floor any SVGD step pays).

    ./dev.sh bench            (or: .venv/bin/python bench/bench_svgd.py)
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax

from numpyro_stein_diag import RBF, Target, plain
from numpyro_stein_diag.kernels import squared_distances
from numpyro_stein_diag.stein_variational import SVGDKernel, _run_chunk, _step_inputs

STEPS = 20


def per_step(run, steps):
    """Seconds per step of ``run(steps)``, compiled first; best of 3."""
    jax.block_until_ready(run(steps))
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        jax.block_until_ready(run(steps))
        best = min(best, (time.perf_counter() - start) / steps)
    return best


def gaussian_target(dim):
    return Target.from_potential(lambda z: 0.5 * jnp.sum(z**2), jnp.zeros(dim))


def ours(x):
    update = SVGDKernel(gaussian_target(x.shape[1]), optax.adam(0.05), RBF())
    state = update.init(x)
    inputs = _step_inputs(plain(), jax.random.PRNGKey(0), STEPS, STEPS, 0.05)

    def run(steps):
        return _run_chunk(update, state, inputs)[0]

    return per_step(run, STEPS)


def gemm_floor(x):
    """phi = (K S + (K X - diag(K 1) X) / h) / N with a fixed bandwidth: three GEMMs and an exp."""
    opt = optax.adam(0.05)

    @jax.jit
    def run_steps(x, opt_state):
        def step(carry, _):
            x, opt_state = carry
            k = jnp.exp(-0.5 * squared_distances(x, x))
            phi = (k @ -x + (jnp.sum(k, 1, keepdims=True) * x - k @ x)) / x.shape[0]
            updates, opt_state = opt.update(-phi, opt_state, x)
            return (optax.apply_updates(x, updates), opt_state), None

        return jax.lax.scan(step, (x, opt_state), None, length=STEPS)[0][0]

    return per_step(lambda steps: run_steps(x, opt.init(x)), STEPS)


def blackjax_svgd(x, steps):
    import blackjax

    algo = blackjax.svgd(jax.grad(lambda z: -0.5 * jnp.sum(z**2)), optax.adam(0.05))
    state = algo.init(x, {"length_scale": 1.0})

    @jax.jit
    def run_steps(state):
        return jax.lax.scan(lambda s, _: (algo.step(s), None), state, None, length=steps)[0].particles

    return per_step(lambda _: run_steps(state), steps)


def numpyro_svgd(x, steps):
    from numpyro.contrib.einstein import SVGD, RBFKernel
    from numpyro.optim import Adam

    dim = x.shape[1]

    def model():
        numpyro.sample("z", dist.Normal(jnp.zeros(dim), 1.0).to_event(1))

    stein = SVGD(model, Adam(0.05), RBFKernel(), num_stein_particles=x.shape[0])
    state = stein.init(jax.random.PRNGKey(0))

    @jax.jit
    def run_steps(state):
        return jax.lax.scan(lambda s, _: (stein.update(s)[0], None), state, None, length=steps)[0]

    return per_step(lambda _: run_steps(state), steps)


def main():
    print("ms per SVGD step (after compilation), standard Gaussian, RBF with median bandwidth")
    print(
        f"{'N':>5} {'d':>3} {'this':>8} {'GEMM floor':>10} {'blackjax':>9} {'numpyro':>9} "
        f"{'vs best peer':>12} {'vs floor':>8} {'GFLOP/s':>8}"
    )
    for n in (256, 1024, 4096):
        for dim in (10, 50):
            x = jax.random.normal(jax.random.PRNGKey(1), (n, dim)) * 2.0
            t_ours, t_floor = ours(x), gemm_floor(x)
            peer_steps = max(2, int(STEPS * (256 / n) ** 2))  # the peers are O(N^2 d) with large constants
            t_bj, t_np = blackjax_svgd(x, peer_steps), numpyro_svgd(x, peer_steps)
            gflops = 6 * n * n * dim / t_ours / 1e9  # three N x N x d GEMMs per step
            print(
                f"{n:>5} {dim:>3} {t_ours * 1e3:8.2f} {t_floor * 1e3:10.2f} {t_bj * 1e3:9.1f} {t_np * 1e3:9.1f} "
                f"{min(t_bj, t_np) / t_ours:11.0f}x {t_ours / t_floor:7.2f}x {gflops:8.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
