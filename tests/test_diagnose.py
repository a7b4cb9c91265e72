"""diagnose() end to end: flags raised exactly where samples miss or misweight modes, samples in every form
it takes, its own methods, one compilation per model, and bad input named."""

import arviz_base
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
import xarray as xr
from helpers import funnel, kinds, mixture_draws, two_mode_model

import numpyro_stein_diag as nsd


def test_flags_on_known_truth(two_mode_report):
    r = two_mode_report
    left = int(np.argmin(r.modes.location[:, 0]))
    assert abs(r.masses.mass[left] - 0.3) < max(0.03, 3 * r.masses.mass_se[left])
    assert kinds(r, "exact") == set()
    assert "missed_mode" in kinds(r, "one_mode")
    missed = [f for f in r.flags if f.kind == "missed_mode"]
    assert [f.mode for f in missed] == [left] and "misses mode" in missed[0].message
    assert kinds(r, "wrong_weights") == {"misweighted_mode", "ksd_reject"}
    assert not r.ok
    # the plain KSD is blind to all of it (the reason the mode-mass check exists) ...
    assert all(t.pvalue > 0.01 for t in r.ksd.values())
    # ... the perturbed KSD sees the missing and misweighted modes, and passes exact draws
    pk = r.perturbed_ksd
    assert pk["exact"].pvalue > 0.05 and pk["one_mode"].pvalue < 0.01 and pk["wrong_weights"].pvalue < 0.01
    reject = [f for f in r.flags if f.kind == "ksd_reject"]
    assert {f.method for f in reject} == {"one_mode", "wrong_weights"} and "perturbed" in reject[0].message


def test_a_second_diagnose_of_the_same_model_compiles_nothing_new(count_calls):
    from numpyro_stein_diag import modes

    rng = np.random.default_rng(5)
    samples = {"exact": {"x": mixture_draws(rng, 0.3, (2, 200))}}
    # every compiled function that evaluates the model (ascent, curvature, importance weights,
    # KSD scores, mode jumps) traces Target._log_density_1d, and only while it is being traced
    ascents, model_traces = count_calls(modes, "_ascend"), count_calls(nsd.Target, "_log_density_1d")
    nsd.Target.clear_cache()  # earlier tests may have built (and compiled for) this very target
    nsd.diagnose(two_mode_model, weight_left=0.3, samples=samples, methods=(), progress_bar=False)
    assert len(ascents) == 1 and len(model_traces) >= 5  # traced (compiled) by the first call ...
    first = len(ascents), len(model_traces)
    nsd.diagnose(two_mode_model, weight_left=0.3, samples=samples, methods=(), progress_bar=False)
    assert (len(ascents), len(model_traces)) == first  # ... and not again by the second


@pytest.mark.slow
def test_label_switching_with_canonicalize():
    # y ~ 0.5 N(mu_1, 1) + 0.5 N(mu_2, 1): (mu_1, mu_2) and (mu_2, mu_1) are the same fit.
    y = np.concatenate([np.random.default_rng(1).normal(-3, 1, 60), np.random.default_rng(2).normal(3, 1, 60)])

    def model(y):
        mu = numpyro.sample("mu", dist.Normal(0.0, 5.0).expand([2]))
        mix = dist.MixtureSameFamily(dist.Categorical(jnp.ones(2) / 2), dist.Normal(mu, 1.0))
        numpyro.sample("y", mix, obs=y)

    t = nsd.Target.from_model(model, y)
    modes = nsd.find_modes(t, None, jax.random.PRNGKey(0))
    # draws in one labelling only, from the Laplace approximation at the mode with mu_1 < mu_2
    m = int(np.argmin(modes.location[:, 0]))
    rng = np.random.default_rng(3)
    x = rng.multivariate_normal(modes.location[m], np.linalg.inv(modes.hessian[m]), size=(2, 300))
    samples = {"one_labelling": {"mu": x}}
    plain = nsd.diagnose(model, y, samples=samples, methods=(), progress_bar=False)
    assert len(plain.modes) == 2 and {"missed_mode", "misweighted_mode"} <= kinds(plain, "one_labelling")
    canon = nsd.diagnose(
        model, y, samples=samples, methods=(), progress_bar=False, canonicalize=lambda v: {"mu": jnp.sort(v["mu"])}
    )
    assert len(canon.modes) == 1 and canon.ok
    np.testing.assert_allclose(canon.masses.mass, [1.0], atol=0.01)


@pytest.mark.slow
def test_samples_from_a_datatree_and_an_mcmc_object():
    run = nsd.nuts(
        two_mode_model,
        jax.random.PRNGKey(0),
        num_chains=2,
        num_warmup=200,
        num_samples=200,
        weight_left=0.5,
        progress_bar=False,
    )
    tree = arviz_base.from_numpyro(run.mcmc)
    report = nsd.diagnose(two_mode_model, samples={"mcmc": run.mcmc, "tree": tree}, methods=(), progress_bar=False)
    xr.testing.assert_equal(
        report.to_datatree("mcmc")["posterior"].dataset, report.to_datatree("tree")["posterior"].dataset
    )  # equal up to attrs (creation time)
    np.testing.assert_array_equal(report.checks["mcmc"].observed_share, report.checks["tree"].observed_share)
    assert "sample_stats" in report.to_datatree("mcmc").children


@pytest.mark.slow
def test_a_users_datatree_keeps_its_dimension_names_and_coordinates(tmp_path):
    def model():
        numpyro.sample("theta", dist.Normal(0.0, 1.0).expand([3]))

    rng = np.random.default_rng(0)
    schools = ["Choate", "Deerfield", "Exeter"]
    posterior = xr.Dataset(
        {"theta": (("chain", "draw", "school"), rng.normal(size=(2, 100, 3)))},
        coords={"chain": [0, 1], "draw": np.arange(100), "school": schools},
    )
    stats = xr.Dataset({"diverging": (("chain", "draw"), np.zeros((2, 100), bool))})
    tree = xr.DataTree.from_dict({"posterior": posterior, "sample_stats": stats})
    report = nsd.diagnose(model, samples={"mine": tree}, methods=(), progress_bar=False)
    out = report.to_datatree("mine")
    xr.testing.assert_identical(out["posterior"].to_dataset(), posterior)
    xr.testing.assert_identical(out["sample_stats"].to_dataset(), stats)
    assert out["repaired_posterior"]["theta"].dims == ("chain", "draw", "school")
    assert list(out["repaired_posterior"]["school"].values) == schools
    report.save(tmp_path / "r.nc")
    xr.testing.assert_identical(nsd.Report.load(tmp_path / "r.nc").to_datatree("mine"), out)


@pytest.mark.parametrize(
    "samples, methods, message",
    [
        ({"a": {"y": np.zeros((2, 5))}}, (), r"samples\['a'\].*missing \['x'\]"),
        ({"a": {"x": np.full((2, 5), np.nan)}}, (), "non-finite"),
        ({"a": {"x": np.zeros((2, 0))}}, (), "is empty"),
        ({"a": {"x": np.zeros(5)}}, (), r"\(chain, draw, \.\.\.\)"),
        ({"a": [1, 2]}, (), "MCMC object, an ArviZ DataTree"),
        ({"a": {}}, (), "holds no sites"),
        (xr.DataTree(), (), r"samples is a DataTree; pass a dict that names it"),
        ({}, ("nuts", "hmc"), r"unknown method\(s\) \['hmc'\]"),
        ({}, (), "nothing to check"),
    ],
    ids=["site", "nan", "empty", "axes", "type", "no-sites", "bare-tree", "method", "nothing"],
)
def test_bad_input_is_named(samples, methods, message):
    with pytest.raises((ValueError, TypeError), match=message):
        nsd.diagnose(two_mode_model, samples=samples, methods=methods, progress_bar=False)


@pytest.mark.slow
def test_real_problem_nuts_chains_in_a_squared_parameter():
    # y_i ~ N(theta^2, 1), theta ~ N(0.5, 1): modes at theta = +-2; the prior weighs the positive
    # one by about e^2, so it holds ~88% of the mass. NUTS chains stay in the mode they reach.
    y = np.random.default_rng(0).normal(4.0, 1.0, 20)

    def model(y):
        theta = numpyro.sample("theta", dist.Normal(0.5, 1.0))
        numpyro.sample("y", dist.Normal(theta**2, 1.0), obs=y)

    grid = np.linspace(-6, 6, 200001)
    log_post = -0.5 * (grid - 0.5) ** 2 - 0.5 * np.sum((y[:, None] - grid**2) ** 2, axis=0)
    post = np.exp(log_post - log_post.max())
    truth_positive = post[grid > 0].sum() / post.sum()

    run = nsd.nuts(model, jax.random.PRNGKey(0), y, num_chains=8, num_warmup=300, num_samples=300, progress_bar=False)
    chain_sides = np.asarray((run.samples["theta"] > 0).mean(axis=1))
    assert set(chain_sides) <= {0.0, 1.0}  # no chain ever crossed
    report = nsd.diagnose(model, y, samples={"nuts": run.mcmc}, methods=(), progress_bar=False)
    positive = int(np.argmax(report.modes.values["theta"]))
    assert abs(report.masses.mass[positive] - truth_positive) < max(0.03, 3 * report.masses.mass_se[positive])
    share = chain_sides.mean()
    # the chains never cross, so they do not mix between modes and the share (the chains'
    # starts) is judged against the mass's standard error alone: never flagged within the
    # practical tolerance of 0.05, always flagged beyond it by more than 3 se
    check = report.checks["nuts"]
    assert not check.mixing and int(np.sum(check.transitions)) == 0
    flagged = bool(kinds(report, "nuts") & {"misweighted_mode", "missed_mode"})
    excess = abs(share - report.masses.mass[positive]) - 0.05
    if excess <= 0:
        assert not flagged
    if excess > 3 * report.masses.mass_se[positive]:
        assert flagged


@pytest.mark.slow
def test_own_methods_are_checked_and_their_histories_round_trip(tmp_path):
    """diagnose() running the package's own SVGD (small settings), not only user samples."""
    methods = {
        "svgd": lambda t, key, bar: nsd.svgd(t, key, 64, 300, progress_bar=bar),
        "svgd_annealed": lambda t, key, bar: nsd.svgd(
            t, key, 64, 300, schedule=nsd.annealed(num_noise=8), progress_bar=bar
        ),
    }
    report = nsd.diagnose(two_mode_model, methods=methods, rng_key=jax.random.PRNGKey(3), progress_bar=False)
    assert report.methods == list(methods) and len(report.modes) == 2
    for m in methods:
        diag = report.diagnostics(m)
        assert diag.sizes["step"] == 300 and np.all(np.isfinite(diag["history_ksd"]))
    path = tmp_path / "own.nc"
    report.save(path)
    loaded = nsd.Report.load(path)
    assert loaded == report and loaded.flags == report.flags
    for m in methods:
        xr.testing.assert_identical(loaded.diagnostics(m), report.diagnostics(m))
        assert loaded.ksd[m] == report.ksd[m]


def test_exact_funnel_draws_raise_no_flag():
    """Neal's funnel in 10 dimensions has no mode with a Laplace approximation (its density peaks in the
    neck, at v = -40.5): the report says so, keeps the KSD test (the density is smooth) and flags nothing."""
    rng = np.random.default_rng(0)
    v = rng.normal(0, 3, 1000)
    draws = {"v": v[None], "x": (rng.normal(size=(1000, 9)) * np.exp(v / 2)[:, None])[None]}
    report = nsd.diagnose(funnel, samples={"exact": draws}, methods=(), independent=["exact"], progress_bar=False)
    assert not report.flags
    assert "degenerate point (v = -40.5" in report.stage("modes").reason
    assert report.stage("smoothness").ok and report.tests("exact")["plain"].pvalue > 0.05
    with pytest.raises(ValueError, match="no repair"):
        report.repaired("exact")


def test_a_search_budget_that_is_not_a_count_is_named():
    for budget in (-1, 2.5):
        with pytest.raises(ValueError, match="search_budget is a number of ascents"):
            nsd.diagnose(two_mode_model, methods=(), samples={"s": {"x": np.zeros((1, 4))}}, search_budget=budget)
