"""What the audit costs against the NUTS run it audits, in one run.

diagnose(samples={"nuts": mcmc}, methods=()) on 4 NUTS chains of posteriors at the data sizes
users have: a 5-D, 3-mode mixture, a 10-D correlated unimodal one, a 100-group hierarchy with one
row per group (d = 102), the same hierarchy with 5 rows per group (500 rows), a logistic
regression with 1000 rows and 20 predictors, and a factor analysis (2 factors, 10 observed
variables, 200 rows, d = 29, four sign-flip modes). Reported: wall time of mode finding, masses,
checks and repairs on the first call (compilation included, as a user meets it) against NUTS's
wall time (its compilation included too); a second call on the same draws in the same process
(compiled code reused); the audit in a new process with JAX's persistent compilation cache
(nsd.enable_compilation_cache) filled by an earlier process; and the work in gradient terms:
NUTS's gradient evaluations (leapfrog steps of sampling, twice for warm-up) against the audit's,
stage by stage (count_gradients: L-BFGS steps, d per Hessian, one per KSD score).

    .venv/bin/python bench/bench_diagnose.py [NAME ...]     (default: every posterior)
"""

import collections
import contextlib
import importlib
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
from numpyro_stein_diag import basins, masses, modes

# the modules, not the package's functions of the same name
ksd, perturbed = (importlib.import_module(f"numpyro_stein_diag.{name}") for name in ("ksd", "perturbed"))


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


ROWS = np.random.default_rng(2)
GROUP_500 = np.repeat(np.arange(100), 5)
Y_500 = ROWS.normal(1.0 + 2.0 * ROWS.normal(size=100)[GROUP_500], 1.0)


def hierarchical_500_rows(group=GROUP_500, y=Y_500):
    """y_i ~ N((mu + tau z)[g_i], 1): 100 groups of 5 rows, non-centred, d = 102."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfNormal(5.0))
    with numpyro.plate("group", 100):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Normal((mu + tau * z)[group], 1.0), obs=y)


X_LOGISTIC = ROWS.normal(size=(1000, 20))
Y_LOGISTIC = (ROWS.random(1000) < 1 / (1 + np.exp(-X_LOGISTIC @ ROWS.normal(0, 0.5, 20)))).astype(float)


def logistic_1000_rows(x=X_LOGISTIC, y=Y_LOGISTIC):
    """Bernoulli-logit regression, 1000 rows, 20 predictors and an intercept: d = 21."""
    beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([x.shape[1]]))
    alpha = numpyro.sample("alpha", dist.Normal(0.0, 2.0))
    numpyro.sample("y", dist.Bernoulli(logits=alpha + x @ beta), obs=y)


LOADINGS = ROWS.normal(0.0, 1.0, (10, 2))
Y_FACTORS = ROWS.normal(size=(200, 2)) @ LOADINGS.T + ROWS.normal(0.0, 0.5, (200, 10))


def factor_analysis(y=Y_FACTORS):
    """y = W f + e, 2 factors, 10 observed variables, 200 rows, factors integrated out:
    y_i ~ N(0, W W^T + diag(psi)); d = 29 (W: 20, psi: 10, less the one rotation that lower-
    triangular loadings remove); the sign of each factor's column is free: four modes."""
    w_free = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([19]))
    loadings = jnp.zeros((10, 2)).at[jnp.tril_indices(10, 0, 2)].set(w_free)
    psi = numpyro.sample("psi", dist.HalfNormal(1.0).expand([10]))
    cov = loadings @ loadings.T + jnp.diag(psi)
    numpyro.sample("y", dist.MultivariateNormal(jnp.zeros(10), cov).expand([y.shape[0]]), obs=y)


POSTERIORS = {  # name: (model, NUTS warm-up = draws per chain)
    "5-D, 3 modes": (three_modes_5d, 1000),
    "10-D unimodal": (unimodal_10d, 1000),
    "hierarchical d=102": (hierarchical_100, 500),
    "hierarchy, 500 rows": (hierarchical_500_rows, 500),
    "logistic, 1000 rows": (logistic_1000_rows, 500),
    "factor analysis": (factor_analysis, 500),
}


def nuts_and_audit(name):
    """NUTS seconds and gradient evaluations, the first call's report and gradient evaluations by
    stage (count_gradients), first-call and second-call audit seconds."""
    model, num = POSTERIORS[name]
    start = time.perf_counter()
    run = nsd.nuts(model, jax.random.PRNGKey(0), num_chains=4, num_warmup=num, num_samples=num, progress_bar=False)
    t_nuts = time.perf_counter() - start
    # leapfrog steps of the draws kept; warm-up takes about as many again
    nuts_gradients = 2 * int(np.sum(run.mcmc.get_extra_fields()["num_steps"]))
    audits, reports, gradients = [], [], []
    for _ in range(2):
        with count_gradients() as counted:
            start = time.perf_counter()
            reports.append(nsd.diagnose(model, samples={"nuts": run.mcmc}, methods=(), progress_bar=False))
            audits.append(time.perf_counter() - start)
        gradients.append(counted)
    return t_nuts, nuts_gradients, reports[0], gradients[0], audits


@contextlib.contextmanager
def count_ascents():
    """The number of points each L-BFGS ascent call of the package ascends, while the block runs
    (mode search and basin assignment)."""
    original, counted = modes.ascend_all, []

    def counting(target, x0, *args, **kwargs):
        counted.append(len(x0))
        return original(target, x0, *args, **kwargs)

    for module in (modes, basins):
        module.ascend_all = counting
    try:
        yield counted
    finally:
        for module in (modes, basins):
            module.ascend_all = original


STAGES = {"_search_modes": "modes", "_estimate_masses": "masses", "audit": "checks", "_repair": "repairs"}


@contextlib.contextmanager
def count_gradients():
    """Gradient evaluations of diagnose() by stage while the block runs, ``{stage: count}``: an
    ascent's L-BFGS steps (one gradient each; more where a line search backtracks, and a chunk of
    ascents runs until its slowest ends: neither is counted), d per Hessian (forward over reverse)
    and one per KSD score. Log densities without gradients (importance weights, mode jumps) are
    not counted."""
    counted = collections.Counter()

    def stage():
        frame = sys._getframe()
        while frame is not None and frame.f_code.co_name not in STAGES:
            frame = frame.f_back
        return "other" if frame is None else STAGES[frame.f_code.co_name]

    def counting(original, count):
        def wrapper(target, x, *args, **kwargs):
            out = original(target, x, *args, **kwargs)
            counted[stage()] += count(target, x, out)
            return out

        return wrapper

    patches = [
        (module, name, counting(getattr(module, name), count))
        for name, modules, count in (
            ("ascend_all", (modes, basins), lambda t, x, out: int(np.sum(out.steps))),
            ("curvature", (modes, masses), lambda t, x, out: len(x) * t.dim),
            ("points_and_scores", (ksd, perturbed), lambda t, x, out: len(out[0])),
        )
        for module in modules
    ]
    originals = [(module, name, getattr(module, name)) for module, name, _ in patches]
    for module, name, wrapper in patches:
        setattr(module, name, wrapper)
    try:
        yield counted
    finally:
        for module, name, original in originals:
            setattr(module, name, original)


def audit_in_new_process(name, cache_dir):
    """The first-call audit time in a fresh process with the persistent cache at ``cache_dir``."""
    out = subprocess.run(
        [sys.executable, __file__, "--cached", name, cache_dir], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(names):
    print(
        f"{'posterior':>20} {'NUTS s':>7} {'modes':>6} {'masses':>7} {'checks':>7} {'repairs':>8} {'first s':>8} "
        f"{'/NUTS':>6} {'second s':>9} {'/NUTS':>6} {'cached s':>9} {'/NUTS':>6} {'NUTS grads':>10} "
        f"{'audit grads: modes':>18} {'masses':>7} {'checks':>7} {'repairs':>7} {'/NUTS':>6}  modes found, flags"
    )
    for name in names:
        t_nuts, nuts_gradients, report, gradients, (first, second) = nuts_and_audit(name)
        with tempfile.TemporaryDirectory() as cache_dir:
            audit_in_new_process(name, cache_dir)  # fills the cache
            cached = audit_in_new_process(name, cache_dir)["first"]
        t = report.timings
        flags = sorted({f.kind for f in report.flags}) or ["none"]
        print(
            f"{name:>20} {t_nuts:7.1f} {t['modes']:6.1f} {t['masses']:7.1f} {t['check']:7.1f} {t['repair']:8.1f} "
            f"{first:8.1f} {first / t_nuts:6.2f} {second:9.1f} {second / t_nuts:6.2f} {cached:9.1f} "
            f"{cached / t_nuts:6.2f} {nuts_gradients:10d} {gradients['modes']:18d} {gradients['masses']:7d} "
            f"{gradients['checks']:7d} {gradients['repairs']:7d} {sum(gradients.values()) / nuts_gradients:6.2f}  "
            f"{len(report.modes)}, {', '.join(flags)}",
            flush=True,
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--cached"]:
        nsd.enable_compilation_cache(sys.argv[3])
        t_nuts, _, _, _, (first, second) = nuts_and_audit(sys.argv[2])
        print(json.dumps({"nuts": t_nuts, "first": first, "second": second}))
    else:
        unknown = [n for n in sys.argv[1:] if n not in POSTERIORS]
        if unknown:
            sys.exit(f"unknown posterior(s) {unknown}; choose from {list(POSTERIORS)}")
        main(sys.argv[1:] or list(POSTERIORS))
