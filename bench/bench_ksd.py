"""KSD V statistic, d = 10: this package against stein-thinning and dense n x n NumPy, in one run.

    ./dev.sh bench            (or: .venv/bin/python bench/bench_ksd.py [--million])

Prints values (they must agree), seconds, the speed-up over stein-thinning, and the
peak resident memory of a run at n = 100,000 (in a fresh process, so the figure is its own);
with --million also at n = 1,000,000 (n^2 = 10^12 kernel entries: the better part of an hour on
2 cores; docs/benchmarks.md has the figures).
"""

import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_stein_diag import IMQ, Target, ksd

DIM = 10


def standard_gaussian():
    return Target.from_potential(lambda z: 0.5 * jnp.sum(z**2), jnp.zeros(DIM))


def draws(n, seed=0):
    # a slightly wrong sample so the KSD is not ~0: N(0.1, 1.1^2)
    return np.random.default_rng(seed).normal(0.1, 1.1, (n, DIM))


def timed(fn, repeats=1):
    fn()  # warm-up: compilation is not timed
    start = time.perf_counter()
    for _ in range(repeats):
        value = fn()
    return float(value), (time.perf_counter() - start) / repeats


def ours(x):
    t = standard_gaussian()
    return timed(lambda: jax.block_until_ready(ksd(t, x, IMQ())), repeats=3)


def stein_thinning_ksd(x):
    from stein_thinning.kernel import make_imq
    from stein_thinning.stein import ksd as st_ksd

    grad = -x
    vfk0 = make_imq(x, "id")

    def integrand(ind1, ind2):
        return vfk0(x[ind1], x[ind2], grad[ind1], grad[ind2])

    start = time.perf_counter()
    value = st_ksd(integrand, x.shape[0])[-1] ** 2  # it returns sqrt(sum h) / n
    return float(value), time.perf_counter() - start


def dense_numpy(x):
    """kgof-style: the full n x n Stein matrix (float64)."""

    def run():
        s = -x
        diff = x[:, None, :] - x[None, :, :]  # (n, n, d)
        r = np.sum(diff**2, -1)
        base = 1.0 + r
        cross = np.einsum("ijd,jd->ij", diff, s) - np.einsum("ijd,id->ij", diff, s)
        h = (s @ s.T) * base**-0.5 - base**-1.5 * cross + DIM * base**-1.5 - 3.0 * r * base**-2.5
        return h.mean()

    start = time.perf_counter()
    value = run()
    return float(value), time.perf_counter() - start


def peak_rss_child(n):
    code = (
        "import resource, time, jax; import numpy as np; "
        "from bench.bench_ksd import draws, standard_gaussian; from numpyro_stein_diag import ksd; "
        f"x = draws({n}); t0 = time.perf_counter(); v = float(ksd(standard_gaussian(), x)); "
        "print(v, time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    value, seconds, kib = out.stdout.split()
    return float(value), float(seconds), int(kib) / 1024


def main():
    print(f"KSD^2 (V statistic, IMQ c=1 beta=-1/2 l=1), d = {DIM}, N(0.1, 1.1^2 I) draws vs N(0, I)")
    print(f"{'n':>7} {'method':>16} {'KSD^2':>12} {'seconds':>9} {'speed-up':>9}")
    for n in (2000, 10000):
        x = draws(n)
        value, seconds = ours(x)
        rows = [("this package", value, seconds)]
        rows.append(("stein-thinning", *stein_thinning_ksd(x)))
        if n <= 2000:  # the dense (n, n, d) tensor needs 8 GB at n = 10,000
            rows.append(("dense NumPy", *dense_numpy(x)))
        ref = rows[1][2]
        for name, v, s in rows:
            print(f"{n:>7} {name:>16} {v:12.6f} {s:9.3f} {ref / s:8.1f}x")
    for n in (100_000, 1_000_000) if "--million" in sys.argv else (100_000,):
        value, seconds, mib = peak_rss_child(n)
        print(f"{n:>7} {'this package':>16} {value:12.6f} {seconds:9.3f}   peak RSS {mib:.0f} MiB", flush=True)


if __name__ == "__main__":
    main()
