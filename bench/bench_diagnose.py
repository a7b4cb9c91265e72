"""What the audit costs against the NUTS run it audits, in one run.

diagnose(samples={"nuts": mcmc}, methods=()) on 4 chains x 1000 draws of a 5-D, 3-mode
posterior and of a 10-D correlated unimodal one: wall time of mode finding, mass estimation,
checks and the repaired posterior (first call, compilation included, as a user meets it) against NUTS's wall time,
and the total of a second call on the same draws (compiled code reused).

    .venv/bin/python bench/bench_diagnose.py
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import numpyro_stein_diag as nsd


def three_modes_5d():
    locs = jnp.array([[-6.0, 0, 0, 0, 0], [6.0, 0, 0, 0, 0], [0, 7.0, 0, 0, 0]])
    weights = jnp.array([0.5, 0.3, 0.2])
    components = dist.Normal(locs, jnp.array([1.0, 0.7, 1.5])[:, None]).to_event(1)
    numpyro.sample("x", dist.MixtureSameFamily(dist.Categorical(weights), components))


def unimodal_10d():
    cov = 0.5 * jnp.eye(10) + 0.5
    numpyro.sample("x", dist.MultivariateNormal(jnp.zeros(10), cov))


def main():
    print(f"{'posterior':>14} {'NUTS s':>7} {'modes s':>8} {'masses s':>9} {'checks s':>9} {'repairs s':>9} {'total s':>8} "
          f"{'total/NUTS':>10} {'again s':>8}  modes found, flags")
    for name, model in (("5-D, 3 modes", three_modes_5d), ("10-D unimodal", unimodal_10d)):
        start = time.perf_counter()
        run = nsd.nuts(model, jax.random.PRNGKey(0), num_chains=4, num_warmup=1000, num_samples=1000, progress_bar=False)
        t_nuts = time.perf_counter() - start
        start = time.perf_counter()
        report = nsd.diagnose(model, samples={"nuts": run.mcmc}, methods=(), progress_bar=False)
        total = time.perf_counter() - start
        t = report.timings
        start = time.perf_counter()
        nsd.diagnose(model, samples={"nuts": run.mcmc}, methods=(), progress_bar=False)
        again = time.perf_counter() - start
        flags = sorted({f.kind for f in report.flags}) or ["none"]
        print(f"{name:>14} {t_nuts:7.1f} {t['modes']:8.1f} {t['masses']:9.1f} {t['checks']:9.1f} {t['repairs']:9.1f} {total:8.1f} "
              f"{total / t_nuts:10.2f} {again:8.1f}  {len(report.modes)}, {', '.join(flags)}", flush=True)


if __name__ == "__main__":
    main()
