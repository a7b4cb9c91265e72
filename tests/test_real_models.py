"""Real model shapes, written as numpyro's examples write them: each gets the report its truth calls for.

An end-to-end file: each test runs the whole audit (target, NUTS or SVGD, modes, masses, check, report,
plots) on one model, so the tests are grouped by model rather than by module, and all are marked slow
(the support checks have fast twins in test_target.py and test_validation.py).

Small sizes (2 NUTS chains of 200 warm-up + 300 draws); the verdicts asserted are what a correct audit of
correct samples must say, and what it must say when a stage cannot see everything.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC, NUTS

import numpyro_stein_diag as nsd
from numpyro_stein_diag.diagnose import run_from_samples

pytestmark = pytest.mark.slow  # the whole audit per test, most after a NUTS run: about 80 s in all

Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def eight_schools_noncentred(y=Y, sigma=SIGMA):
    mu = numpyro.sample("mu", dist.Normal(0, 5))
    tau = numpyro.sample("tau", dist.HalfCauchy(5))
    with numpyro.plate("J", len(y)):
        theta_tilde = numpyro.sample("theta_tilde", dist.Normal(0, 1))
        theta = numpyro.deterministic("theta", mu + tau * theta_tilde)
        numpyro.sample("obs", dist.Normal(theta, sigma), obs=y)


def eight_schools_centred(y=Y, sigma=SIGMA):
    mu = numpyro.sample("mu", dist.Normal(0, 5))
    tau = numpyro.sample("tau", dist.HalfCauchy(5))
    with numpyro.plate("J", len(y)):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("obs", dist.Normal(theta, sigma), obs=y)


def run_nuts(model, seed=0, **kwargs):
    mcmc = MCMC(
        NUTS(model), num_warmup=200, num_samples=300, num_chains=2, chain_method="sequential", progress_bar=False
    )
    mcmc.run(jax.random.PRNGKey(seed), **kwargs)
    return mcmc


def stage(report, name):
    return next(s for s in report.stages if s.name == name)


@pytest.fixture(scope="module")
def eight_schools_mcmc():
    return run_nuts(eight_schools_noncentred)


def test_eight_schools_noncentred_passes_and_plots(eight_schools_mcmc, tmp_path):
    report = nsd.diagnose(
        eight_schools_noncentred, samples={"nuts": eight_schools_mcmc}, methods=(), progress_bar=False
    )
    assert report.ok and len(report.modes) == 1
    assert stage(report, "modes").ok and stage(report, "check nuts").ok
    # the masses stage may fall back to Laplace (a funnel-shaped posterior), and must then say so
    masses = stage(report, "masses")
    assert masses.ok or (masses.status == "warning" and "Pareto k" in masses.reason)
    # a single mode holds all the mass: nothing to judge, and no p-value resting on a zero se
    assert report.checks["nuts"].pvalue[0] == 1.0
    # vector sites (a plate of 8) plot, one panel per school, mode marks included
    plots = report.plot(tmp_path)
    assert (tmp_path / "methods.png").stat().st_size > 5000
    assert list(plots["methods"].viz["plot"]["theta_tilde"].sizes.values()) == [8]


def test_eight_schools_centred_has_no_mode_and_says_why(eight_schools_mcmc):
    draws = eight_schools_mcmc.get_samples(group_by_chain=True)
    samples = {k: draws[k] for k in ("mu", "tau", "theta")}  # exact draws of the centred posterior
    report = nsd.diagnose(eight_schools_centred, samples={"nuts": samples}, methods=(), progress_bar=False)
    modes, masses = stage(report, "modes"), stage(report, "masses")
    assert modes.status == "failed" and "the log density growing as tau -> 0" in modes.reason
    assert masses.status == "failed" and len(report.modes) == 0
    # the KSD test still ran, passes correct draws, and no flag claims more than was seen
    assert report.ok and not report.complete
    assert report.ksd["nuts"].pvalue > 0.01
    assert "not every check could run" in report.summary()
    assert "failed</b> - no mode found" in report._repr_html_()
    df = report.to_dataframe()  # no mode: one row per method, still with its KSD p-value
    assert list(df.index) == [("nuts", -1)] and df["ksd_pvalue"].iloc[0] == report.ksd["nuts"].pvalue
    with pytest.raises(ValueError, match="masses were not estimated"):
        report.repaired("nuts")


def test_a_failing_method_is_reported_and_the_rest_is_audited(eight_schools_mcmc):
    def broken(target, key, progress_bar):
        raise FloatingPointError("SVGD produced non-finite particles by step 40 of 100")

    def copy(target, key, progress_bar):  # a Run that calls itself "nuts", run under another name
        return run_from_samples(target, "nuts", eight_schools_mcmc)

    report = nsd.diagnose(
        eight_schools_noncentred,
        samples={"mine": eight_schools_mcmc},
        methods={"broken": broken, "copy": copy},
        progress_bar=False,
    )
    assert report.methods == ["mine", "copy"] and report.checks["copy"].method == "copy"
    assert set(report.checks) == {"mine", "copy"}
    failed = stage(report, "run broken")
    assert failed.status == "failed" and "step 40 of 100" in failed.reason
    assert not report.complete and "run broken: failed" in report.summary()


def test_annealed_svgd_on_eight_schools_finishes_finite(eight_schools_mcmc):
    settings = {"num_particles": 64, "num_steps": 300, "num_checkpoints": 2}
    report = nsd.diagnose(eight_schools_noncentred, methods={"svgd_annealed": settings}, progress_bar=False)
    assert stage(report, "run svgd_annealed").ok
    posterior = report.to_datatree("svgd_annealed")["posterior"].dataset
    diag = report.diagnostics("svgd_annealed")
    assert posterior.sizes["draw"] == 64 and diag.sizes["step"] == 300  # the settings reached svgd()
    draws = {k: v.values for k, v in posterior.data_vars.items()}
    assert all(np.isfinite(np.asarray(v)).all() for v in draws.values())
    # the posterior mean of mu (NUTS: about 4.4, sd 3.3) within one posterior sd
    nuts_mu = eight_schools_mcmc.get_samples()["mu"]
    assert abs(float(np.mean(draws["mu"])) - float(nuts_mu.mean())) < float(nuts_mu.std())


def hierarchical(group, y, num_groups):
    mu = numpyro.sample("mu", dist.Normal(0, 2))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1))
    with numpyro.plate("groups", num_groups):
        z = numpyro.sample("z", dist.Normal(0, 1))
    numpyro.sample("y", dist.Normal(mu + sigma * z[group], 1.0), obs=y)


def test_a_hierarchy_with_60_groups_passes():
    rng = np.random.default_rng(0)
    group = np.repeat(np.arange(60), 3)
    y = rng.normal(1.0 + 0.7 * rng.normal(size=60)[group], 1.0)
    mcmc = run_nuts(hierarchical, group=group, y=y, num_groups=60)
    report = nsd.diagnose(hierarchical, group, y, 60, samples={"nuts": mcmc}, methods=(), progress_bar=False)
    assert report.ok and len(report.modes) == 1 and stage(report, "modes").ok
    assert report.modes.location.shape[-1] == 62


def constrained_sites():
    w = numpyro.sample("w", dist.Dirichlet(jnp.ones(3)))
    s = numpyro.sample("s", dist.HalfNormal(1.0))
    corr = numpyro.sample("L", dist.LKJCholesky(3, 2.0))
    numpyro.deterministic("scaled", s * w)
    numpyro.sample("obs", dist.MultivariateNormal(jnp.zeros(3), scale_tril=s * corr), obs=np.eye(3) * 0.5)


def test_dirichlet_halfnormal_lkj_and_deterministic_sites(tmp_path):
    mcmc = run_nuts(constrained_sites)
    report = nsd.diagnose(constrained_sites, samples={"nuts": mcmc}, methods=(), progress_bar=False)
    assert report.ok and len(report.modes) == 1
    # unconstrained: 2 (simplex) + 1 (positive) + 3 (3x3 correlation Cholesky factor)
    assert report.modes.location.shape[-1] == 6
    plots = report.plot(tmp_path)
    assert list(plots["methods"].viz["plot"]["L"].sizes.values()) == [3, 3]


def test_a_negative_scale_is_named_with_its_support():
    mcmc_like = {
        "w": np.full((2, 10, 3), 1 / 3),
        "s": -np.ones((2, 10)),
        "L": np.broadcast_to(np.eye(3), (2, 10, 3, 3)),
    }
    with pytest.raises(ValueError, match=r"site 's' has 20 of 20 draws outside its support Positive"):
        nsd.diagnose(constrained_sites, samples={"mine": mcmc_like}, methods=(), progress_bar=False)


def test_float32_round_off_is_inside_the_support_and_a_reserved_name_is_refused():
    t = nsd.Target.from_model(constrained_sites)
    w = np.full((2, 10, 3), 1 / 3, np.float32) + np.float32(2e-6)  # sums to 1 + 6e-6
    draws = {"w": w, "s": np.ones((2, 10)), "L": np.broadcast_to(np.eye(3), (2, 10, 3, 3))}
    assert np.isfinite(np.asarray(t.unconstrain(draws))).all()
    with pytest.raises(ValueError, match=r"\['modes'\] cannot name a method"):
        nsd.diagnose(constrained_sites, samples={"modes": draws}, methods=(), progress_bar=False)


def test_an_mcmc_object_passed_bare_is_named(eight_schools_mcmc):
    with pytest.raises(TypeError, match=r"samples=\{'nuts': mcmc\}"):
        nsd.diagnose(eight_schools_noncentred, samples=eight_schools_mcmc, methods=(), progress_bar=False)


def logistic(x, y=None):
    beta = numpyro.sample("beta", dist.Normal(0, 2).expand([x.shape[1]]))
    alpha = numpyro.sample("alpha", dist.Normal(0, 2))
    numpyro.sample("y", dist.Bernoulli(logits=alpha + x @ beta), obs=y)


def test_logistic_regression_passes():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(100, 2))
    y = (rng.random(100) < 1 / (1 + np.exp(-(0.5 + x @ np.array([1.0, -1.0]))))).astype(float)
    mcmc = run_nuts(logistic, x=x, y=y)
    report = nsd.diagnose(logistic, x, y, samples={"nuts": mcmc}, methods=(), progress_bar=False)
    assert report.ok and report.complete and len(report.modes) == 1
    assert report.masses.mass_method == "bridge"


def potential_mixture():
    """A density given only through numpyro.factor on an ImproperUniform site: 0.3 / 0.7 at x1 = -3 / 3."""
    x = numpyro.sample("x", dist.ImproperUniform(dist.constraints.real, (), (2,)))
    left = jnp.log(0.3) - 0.5 * jnp.sum((x - jnp.array([-3.0, 0.0])) ** 2)
    right = jnp.log(0.7) - 0.5 * jnp.sum((x - jnp.array([3.0, 0.0])) ** 2)
    numpyro.factor("log_density", jnp.logaddexp(left, right))


def test_a_factor_only_potential_gets_masses_and_flags():
    rng = np.random.default_rng(0)
    exact = rng.normal(size=(4, 500, 2))
    exact[..., 0] += np.where(rng.random((4, 500)) < 0.3, -3.0, 3.0)
    one_mode = rng.normal(size=(4, 500, 2)) + np.array([3.0, 0.0])
    report = nsd.diagnose(
        potential_mixture, samples={"exact": {"x": exact}, "one_mode": {"x": one_mode}}, methods=(), progress_bar=False
    )
    modes, masses = report.modes, report.masses
    left = int(np.argmin(modes.location[:, 0]))
    assert len(modes) == 2 and abs(masses.mass[left] - 0.3) < 3 * masses.mass_se[left] + 0.01
    assert not [f for f in report.flags if f.method == "exact"]
    assert {(f.kind, f.mode) for f in report.flags if f.method == "one_mode"} >= {("missed_mode", left)}
