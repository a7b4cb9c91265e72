"""SVGD and KSD split over 1, 2 and 4 devices, in one run.

Each device count runs in its own process (XLA_FLAGS=--xla_force_host_platform_device_count=k
must be set before JAX starts). On a CPU the k devices are faked: they share the same cores,
and one device already uses every core for its matrix products, so this shows that the split
costs little and gives the same numbers, not a speed-up; on k real accelerators the work per
device falls by k.

    .venv/bin/python bench/bench_devices.py
"""

import json
import os
import subprocess
import sys
import time

DEVICE_COUNTS = (1, 2, 4)
SVGD_PARTICLES, SVGD_STEPS, DIM = 4096, 100, 10
KSD_DRAWS, TEST_DRAWS, NUM_BOOTSTRAP = 20_000, 4_000, 200


def measure():
    """Seconds per SVGD step and per KSD on this process's devices (compilation excluded)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import numpyro_stein_diag as nsd

    target = nsd.Target.from_potential(lambda z: 0.5 * jnp.sum(z**2), jnp.zeros(DIM))

    def timed(fn):
        fn()  # compilation
        start = time.perf_counter()
        value = fn()
        return value, time.perf_counter() - start

    run, svgd_s = timed(
        lambda: nsd.svgd(
            target, jax.random.PRNGKey(0), SVGD_PARTICLES, SVGD_STEPS, num_checkpoints=1, progress_bar=False
        )
    )
    x = np.random.default_rng(0).normal(0.1, 1.1, (KSD_DRAWS, DIM))
    value, ksd_s = timed(lambda: float(nsd.ksd(target, x)))
    test, test_s = timed(
        lambda: nsd.ksd_test(target, x[:TEST_DRAWS], jax.random.PRNGKey(1), num_bootstrap=NUM_BOOTSTRAP)
    )
    return {
        "devices": jax.device_count(),
        "svgd_ms": 1e3 * svgd_s / SVGD_STEPS,
        "ksd_s": ksd_s,
        "test_s": test_s,
        "ksd": value,
        "test_statistic": test.statistic,
        "test_pvalue": test.pvalue,
        "particles_mean": np.asarray(run.particles).mean(0).tolist(),
    }


def in_process_with(devices):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, __file__, "--child"], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    print(
        f"SVGD N = {SVGD_PARTICLES}, d = {DIM}, ms per step; KSD V statistic n = {KSD_DRAWS}; KSD test n = "
        f"{TEST_DRAWS}, B = {NUM_BOOTSTRAP} (seconds, after compilation); faked CPU devices share the cores"
    )
    print(
        f"{'devices':>7} {'SVGD ms/step':>12} {'vs 1':>5} {'KSD s':>7} {'vs 1':>5} {'test s':>7} {'vs 1':>5} "
        f"{'KSD^2':>10} {'test KSD^2':>11} {'p':>6} {'max |particle mean diff|':>24}"
    )
    rows = [in_process_with(k) for k in DEVICE_COUNTS]
    one = rows[0]
    for r in rows:
        diff = max(abs(a - b) for a, b in zip(r["particles_mean"], one["particles_mean"]))
        print(
            f"{r['devices']:>7} {r['svgd_ms']:12.2f} {one['svgd_ms'] / r['svgd_ms']:5.2f} {r['ksd_s']:7.2f} "
            f"{one['ksd_s'] / r['ksd_s']:5.2f} {r['test_s']:7.2f} {one['test_s'] / r['test_s']:5.2f} "
            f"{r['ksd']:10.6f} {r['test_statistic']:11.6f} {r['test_pvalue']:6.3f} {diff:24.1e}",
            flush=True,
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(measure()))
    else:
        main()
