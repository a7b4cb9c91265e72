"""What the audit costs against the NUTS run it audits, in one run.

diagnose(samples={"nuts": mcmc}, methods=()) on 4 NUTS chains of a 5-D, 3-mode posterior, a
10-D correlated unimodal one (1000 warm-up + 1000 draws each) and a 100-group hierarchical model
(d = 102, 500 + 500): wall time of mode finding, mass estimation, checks and the repaired
posterior on the first call (compilation included, as a user meets it) against NUTS's wall time
(its compilation included too); a second call on the same draws in the same process (compiled
code reused); and the audit in a new process with JAX's persistent compilation cache
(nsd.enable_compilation_cache) filled by an earlier process.

    .venv/bin/python bench/bench_diagnose.py
"""

import json
import subprocess
import sys
import tempfile
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


GROUP_Y = np.random.default_rng(0).normal(1.0 + 2.0 * np.random.default_rng(1).normal(size=100), 1.0)


def hierarchical_100(y=GROUP_Y):
    """y_j ~ N(mu + tau z_j, 1), z_j ~ N(0, 1), 100 groups (mu = 1, tau = 2): d = 102 (mu, log tau, z).

    Non-centred: in the centred form the density grows without bound as tau -> 0 (a funnel; the
    audit then says there is no mode and has no masses to check)."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfNormal(5.0))
    with numpyro.plate("group", len(y)):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(mu + tau * z, 1.0), obs=y)


POSTERIORS = {  # name: (model, NUTS warm-up = draws per chain)
    "5-D, 3 modes": (three_modes_5d, 1000),
    "10-D unimodal": (unimodal_10d, 1000),
    "hierarchical d=102": (hierarchical_100, 500),
}


def nuts_and_audit(name):
    """NUTS seconds, the first call's report, first-call and second-call audit seconds."""
    model, num = POSTERIORS[name]
    start = time.perf_counter()
    run = nsd.nuts(model, jax.random.PRNGKey(0), num_chains=4, num_warmup=num, num_samples=num, progress_bar=False)
    t_nuts = time.perf_counter() - start
    audits, reports = [], []
    for _ in range(2):
        start = time.perf_counter()
        reports.append(nsd.diagnose(model, samples={"nuts": run.mcmc}, methods=(), progress_bar=False))
        audits.append(time.perf_counter() - start)
    return t_nuts, reports[0], audits


def audit_in_new_process(name, cache_dir):
    """The first-call audit time in a fresh process with the persistent cache at ``cache_dir``."""
    out = subprocess.run([sys.executable, __file__, "--cached", name, cache_dir], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    print(f"{'posterior':>18} {'NUTS s':>7} {'modes':>6} {'masses':>7} {'checks':>7} {'repairs':>8} {'first s':>8} "
          f"{'/NUTS':>6} {'second s':>9} {'/NUTS':>6} {'cached s':>9} {'/NUTS':>6}  modes found, flags")
    for name in POSTERIORS:
        t_nuts, report, (first, second) = nuts_and_audit(name)
        with tempfile.TemporaryDirectory() as cache_dir:
            audit_in_new_process(name, cache_dir)  # fills the cache
            cached = audit_in_new_process(name, cache_dir)["first"]
        t = report.timings
        flags = sorted({f.kind for f in report.flags}) or ["none"]
        print(f"{name:>18} {t_nuts:7.1f} {t['modes']:6.1f} {t['masses']:7.1f} {t['check']:7.1f} {t['repair']:8.1f} "
              f"{first:8.1f} {first / t_nuts:6.2f} {second:9.1f} {second / t_nuts:6.2f} {cached:9.1f} "
              f"{cached / t_nuts:6.2f}  {len(report.modes)}, {', '.join(flags)}", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--cached"]:
        nsd.enable_compilation_cache(sys.argv[3])
        t_nuts, _, (first, second) = nuts_and_audit(sys.argv[2])
        print(json.dumps({"nuts": t_nuts, "first": first, "second": second}))
    else:
        main()
