"""Jumps in the log density: found where they are, named by site, and never found on a smooth one."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from helpers import two_mode_model
from scipy.special import gammaln, logsumexp

import numpyro_stein_diag as nsd
from numpyro_stein_diag.smoothness import find_jumps

YEARS = 100


def yearly_counts(seed=0):
    """100 years of counts, rate 3 before year 40 and 1 after."""
    return np.random.default_rng(seed).poisson(np.where(np.arange(YEARS) < 40, 3.0, 1.0))


def change_point(y):
    e1 = numpyro.sample("e1", dist.Exponential(1.0))
    e2 = numpyro.sample("e2", dist.Exponential(1.0))
    tau = numpyro.sample("tau", dist.Uniform(0, YEARS))
    numpyro.sample("obs", dist.Poisson(jnp.where(jnp.arange(YEARS) < tau, e1, e2)), obs=y)


def interval_evidence(y):
    """log p(y, tau in (k, k + 1]) up to a constant, per k, and each interval's Gamma posteriors
    (shape, rate) of e1 and e2: with tau in (k, k + 1] years 0..k have rate e1, and an
    Exponential(1) prior with Poisson counts gives Gamma(S + 1, n + 1)."""
    k = np.arange(YEARS)
    before = np.concatenate([[0], np.cumsum(y)])[k + 1]
    n1, n2, after = k + 1, YEARS - k - 1, y.sum() - before
    log_evidence = gammaln(before + 1) - (before + 1) * np.log(n1 + 1)
    log_evidence += gammaln(after + 1) - (after + 1) * np.log(n2 + 1)
    return log_evidence, (before + 1, n1 + 1), (after + 1, n2 + 1)


def change_point_draws(y, n, seed):
    """Exact posterior draws of :func:`change_point` (interval, then tau uniform in it, then rates)."""
    rng = np.random.default_rng(seed)
    log_evidence, (a1, b1), (a2, b2) = interval_evidence(y)
    k = rng.choice(YEARS, n, p=np.exp(log_evidence - logsumexp(log_evidence)))
    return {"e1": rng.gamma(a1[k]) / b1[k], "e2": rng.gamma(a2[k]) / b2[k], "tau": k + rng.random(n)}


def marginal_change_point(y):
    """:func:`change_point` with tau summed out over its 100 intervals: a smooth posterior of (e1, e2)."""
    e1 = numpyro.sample("e1", dist.Exponential(1.0))
    e2 = numpyro.sample("e2", dist.Exponential(1.0))
    before = jnp.arange(YEARS)[None, :] <= jnp.arange(YEARS)[:, None]  # interval k: years 0..k use e1
    log_lik = dist.Poisson(jnp.where(before, e1, e2)).log_prob(y).sum(axis=1)
    numpyro.factor("obs", jax.scipy.special.logsumexp(log_lik) - jnp.log(YEARS))


def step_potential(jump):
    """``-log p(x) = x^2 / 2 - jump 1[x > 0]``: one jump of ``jump`` nats at 0."""
    return nsd.Target.from_potential(lambda z: 0.5 * jnp.sum(z**2) - jump * (z[0] > 0), jnp.zeros(1))


def test_a_jump_of_known_size_is_found_with_its_size():
    target = step_potential(1.5)
    draws = np.random.default_rng(0).normal(size=(400, 1))
    jumps = find_jumps(target, draws, jax.random.PRNGKey(0))
    assert jumps.sites == ("x",)
    assert jumps.largest[0] == pytest.approx(1.5, abs=1e-3)  # the gap is the jump, quadrature error aside
    # a move of 0.25 sd crosses 0 from a N(0, 1) draw with probability E[P(|z| < 0.25 |u|)], about 0.16
    assert 0.08 < jumps.share[0] < 0.25


def test_change_point_jumps_along_tau_only():
    y = yearly_counts()
    target = nsd.Target.from_model(change_point, y)
    draws = change_point_draws(y, 1000, seed=0)
    jumps = find_jumps(target, target.unconstrain(draws, num_sample_axes=1), jax.random.PRNGKey(0))
    assert jumps.sites == ("tau",)
    assert jumps.share[0] > 0.25 and jumps.largest[0] > 1.0


@pytest.mark.parametrize(
    "name",
    ["funnel", "far mixture", "t mode in 20 dimensions"],
)
def test_smooth_posteriors_have_no_jumps(name):
    """Sharply curved (a funnel's neck), far apart (modes at +-15) and heavy-tailed: all smooth."""
    rng = np.random.default_rng(1)
    if name == "funnel":
        v = rng.normal(0, 3, 1000)
        draws = np.column_stack([v, rng.normal(size=(1000, 9)) * np.exp(v / 2)[:, None]])
        target = nsd.Target.from_potential(
            lambda z: z[0] ** 2 / 18 + 4.5 * z[0] + 0.5 * jnp.sum(z[1:] ** 2) * jnp.exp(-z[0]), jnp.zeros(10)
        )
    elif name == "far mixture":
        target = nsd.Target.from_model(two_mode_model, 15.0, 0.3)
        draws = (np.where(rng.random(1000) < 0.3, -15.0, 15.0) + rng.normal(size=1000))[:, None]
    else:
        d = 20
        target = nsd.Target.from_potential(lambda z: 0.5 * (5 + d) * jnp.log1p(jnp.sum(z**2) / 5), jnp.zeros(d))
        draws = rng.normal(size=(1000, d)) / np.sqrt(rng.chisquare(5, 1000) / 5)[:, None]
    assert not find_jumps(target, draws, jax.random.PRNGKey(0))


def test_exact_change_point_draws_raise_no_flag_and_the_report_says_what_does_not_apply():
    y = yearly_counts()
    draws = change_point_draws(y, 1000, seed=1)
    report = nsd.diagnose(
        change_point,
        y,
        samples={"exact": {k: v[None] for k, v in draws.items()}},
        methods=(),
        independent=["exact"],
        progress_bar=False,
    )
    assert not report.flags and not report.complete
    smoothness, modes = report.stage("smoothness"), report.stage("modes")
    assert smoothness.status == "warning" and "jumps along tau" in smoothness.reason
    assert modes.status == "failed" and "not run" in modes.reason
    assert report.tests("exact") == {}  # no KSD test rests on a score that does not see the jumps
    assert "no KSD test" in report.summary()


def test_the_marginalised_change_point_is_smooth_and_every_check_applies():
    """Summing tau out leaves a smooth posterior of (e1, e2): its exact draws pass every check."""
    y = yearly_counts()
    draws = change_point_draws(y, 1000, seed=2)
    report = nsd.diagnose(
        marginal_change_point,
        y,
        samples={"exact": {k: draws[k][None] for k in ("e1", "e2")}},
        methods=(),
        independent=["exact"],
        progress_bar=False,
    )
    assert report.complete and not report.flags
    assert report.stage("smoothness").ok and "plain" in report.tests("exact")


def test_the_sharp_bend_between_close_modes_is_not_a_jump():
    """0.2 N(-6, 1) + 0.3 N(0, 1) + 0.5 N(6, 1): in each valley the score turns around within a
    sixth of a unit, which 4-point quadrature over a whole move misses by up to 0.94 nats (these
    draws and key: 4 moves). Integrating again on 4 parts removes that error; a jump would stay."""

    def three_modes():
        mixing = dist.Categorical(probs=jnp.array([0.2, 0.3, 0.5]))
        numpyro.sample("x", dist.MixtureSameFamily(mixing, dist.Normal(jnp.array([-6.0, 0.0, 6.0]), 1.0)))

    rng = np.random.default_rng(25)
    draws = np.array([-6.0, 0.0, 6.0])[rng.choice(3, size=2000, p=[0.2, 0.3, 0.5])] + rng.normal(size=2000)
    target = nsd.Target.from_model(three_modes)
    assert not find_jumps(target, draws[::16, None], jax.random.PRNGKey(25))
