"""Discovery: starts like the posterior's find a mode that prior draws rarely reach, and the
Good-Turing chance of an unseen mode says when the search may be incomplete."""

import dataclasses
import sys

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from helpers import two_mode_model
from scipy import stats

import numpyro_stein_diag as nsd
from numpyro_stein_diag.discovery import posterior_starts, unseen_chance


def rare_mode_model(y=12.0):
    """theta ~ 0.99 N(0, 1) + 0.01 N(12, 1), y ~ N(theta, 3.41^2): with y = 12, 75% of the
    posterior lies near 12, where one prior draw in a hundred lands."""
    mixture = dist.MixtureSameFamily(
        dist.Categorical(jnp.array([0.99, 0.01])), dist.Normal(jnp.array([0.0, 12.0]), 1.0)
    )
    theta = numpyro.sample("theta", mixture)
    numpyro.sample("y", dist.Normal(theta, 3.41), obs=y)


def far_mass():
    scale = np.sqrt(1.0 + 3.41**2)
    near, far = 0.99 * stats.norm.pdf(12.0, 0.0, scale), 0.01 * stats.norm.pdf(12.0, 12.0, scale)
    return far / (near + far)


def test_good_turing_counts_modes_reached_once():
    assert unseen_chance([5, 1, 1]) == 2 / 7
    assert unseen_chance([40]) == 0.0


def test_starts_follow_the_posterior_not_the_prior():
    t = nsd.Target.from_model(rare_mode_model)
    starts = posterior_starts(t, jax.random.PRNGKey(0))
    # 1% of prior draws lie near 12, 75% of the posterior: the starts near 12 are about 3/4 of
    # the distinct draws resampled (systematic resampling keeps each draw once per 1/64 of weight)
    assert np.mean(starts[:, 0] > 6.0) > 0.5
    assert posterior_starts(
        nsd.Target.from_potential(lambda z: jnp.sum(z**2), jnp.zeros(2)), jax.random.PRNGKey(0)
    ).shape == (0, 2)  # a potential has no prior


def test_a_model_without_observations_starts_from_prior_draws():
    """No observed site: every prior draw has likelihood 1, so the starts are 64 distinct prior draws."""

    def prior_only():
        numpyro.sample("x", dist.Normal(0.0, 1.0).expand([2]))

    starts = posterior_starts(nsd.Target.from_model(prior_only), jax.random.PRNGKey(0))
    assert starts.shape == (64, 2) and len(np.unique(starts[:, 0])) == 64


@pytest.mark.slow
def test_a_mode_prior_draws_rarely_reach_is_found_and_the_sample_that_misses_it_flagged():
    # draws of the near component only (a user's chains that never left theta = 0), 4 x 250
    near = np.random.default_rng(0).normal(0.0 + 12.0 / 12.63, np.sqrt(11.63 / 12.63), (4, 250))
    for seed in range(3):  # the search at 32 prior starts alone found it on 1 of 6 seeds
        report = nsd.diagnose(
            rare_mode_model,
            samples={"near": {"theta": near}},
            methods=(),
            rng_key=jax.random.PRNGKey(seed),
            progress_bar=False,
        )
        far = np.flatnonzero(report.modes.location[:, 0] > 6.0)
        assert far.size == 1
        assert abs(report.masses.mass[far[0]] - far_mass()) < 0.03
        assert ("missed_mode", int(far[0])) in {(f.kind, f.mode) for f in report.flags}
        assert report.modes.unseen_chance <= 0.05 and report.complete


def test_a_unimodal_posterior_gets_no_unseen_mode_warning():
    def correlated():
        numpyro.sample("x", dist.MultivariateNormal(jnp.zeros(3), 0.5 * jnp.eye(3) + 0.5))

    draws = np.random.default_rng(1).multivariate_normal(np.zeros(3), 0.5 * np.eye(3) + 0.5, size=(2, 300))
    report = nsd.diagnose(correlated, samples={"exact": {"x": draws}}, methods=(), progress_bar=False)
    assert len(report.modes) == 1 and report.modes.unseen_chance == 0.0
    assert report.ok and report.complete and all(s.ok for s in report.stages)
    assert "chance of an unseen mode 0.0%" in report.summary()


def test_starts_that_cannot_be_made_are_a_caveat_not_a_failed_search(monkeypatch):
    from helpers import mixture_draws, two_mode_model

    diagnose_module = sys.modules["numpyro_stein_diag.diagnose"]  # nsd.diagnose is the function, not the module

    def broken(target, rng_key):
        raise RuntimeError("log_likelihood failed")

    monkeypatch.setattr(diagnose_module, "posterior_starts", broken)
    draws = mixture_draws(np.random.default_rng(2), 0.5, (2, 200))
    report = nsd.diagnose(two_mode_model, samples={"exact": {"x": draws}}, methods=(), progress_bar=False)
    modes_stage = next(s for s in report.stages if s.step == "modes")
    assert modes_stage.status == "warning" and "no starts like the posterior's (RuntimeError" in modes_stage.reason
    assert len(report.modes) == 2 and report.ok


def test_a_mode_no_start_reaches_is_found_from_the_mass_proposal_draws_in_no_basin():
    """No prior (a factor-only density), chains stuck at 0 and the init box around 0: no start
    reaches the mode at 7 that holds 60%. The masses' proposal draws that land in no known basin
    are ascended, find it, and the stuck chains are flagged against masses within 0.02."""

    def two_modes():
        x = numpyro.sample("x", dist.ImproperUniform(dist.constraints.real, (), ()))
        numpyro.factor("lp", jnp.logaddexp(jnp.log(0.4) - 0.5 * x**2, jnp.log(0.6) - 0.5 * (x - 7.0) ** 2))

    stuck = np.random.default_rng(0).normal(size=(4, 300))
    report = nsd.diagnose(two_modes, samples={"stuck": {"x": stuck}}, methods=(), progress_bar=False)
    far = int(np.argmax(report.modes.location[:, 0]))
    assert len(report.modes) == 2 and report.modes.location[far, 0] == pytest.approx(7.0, abs=1e-3)
    assert report.masses.mass[far] == pytest.approx(0.6, abs=0.02)
    assert {f.kind for f in report.flags} >= {"missed_mode"}


def test_the_search_goes_on_while_it_may_be_incomplete():
    """A search whose two modes were each reached once (Good-Turing chance 100%) adds chunks of
    starts until the chance is below 5%; with no budget it stays as it was."""
    from numpyro_stein_diag.diagnose import _search_further
    from numpyro_stein_diag.discovery import UNSEEN_LIMIT

    t = nsd.Target.from_model(two_mode_model)
    modes = nsd.find_modes(t, np.array([[-4.0], [4.0]]))
    once = dataclasses.replace(modes, start_counts=np.array([1, 1]))
    assert once.unseen_chance == 1.0
    more = _search_further(t, once, jax.random.PRNGKey(0), 1024, None)
    assert len(more) == 2 and more.unseen_chance <= UNSEEN_LIMIT and np.all(more.start_counts > 1)
    np.testing.assert_allclose(np.sort(more.location[:, 0]), [-4.0, 4.0], atol=1e-3)
    assert _search_further(t, once, jax.random.PRNGKey(0), 0, None) is once
