"""Basin assignment: a point belongs to the mode its ascent reaches. The Laplace guess where it is clear,
ascents where in doubt, and a check that sends every point to ascents when the guess is wrong. Results
must equal full ascents."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from helpers import two_mode_model

import numpyro_stein_diag as nsd
from numpyro_stein_diag import basins


def three_modes_2d():
    locs = jnp.array([[-5.0, 0.0], [5.0, 0.0], [0.0, 6.0]])
    components = dist.Normal(locs, jnp.array([1.0, 0.6, 1.5])[:, None]).to_event(1)
    numpyro.sample("x", dist.MixtureSameFamily(dist.Categorical(jnp.array([0.5, 0.3, 0.2])), components))


def exact_draws(rng, n):
    which = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    locs, scales = np.array([[-5.0, 0.0], [5.0, 0.0], [0.0, 6.0]]), np.array([1.0, 0.6, 1.5])
    return locs[which] + scales[which, None] * rng.normal(size=(n, 2))


def count_ascents(monkeypatch):
    counted, original = [], basins.ascend_all

    def counting(target, x0, num_iter):
        counted.append(len(x0))
        return original(target, x0, num_iter)

    monkeypatch.setattr(basins, "ascend_all", counting)
    return counted


@pytest.mark.slow
def test_clear_points_take_the_laplace_guess_and_agree_with_full_ascents(monkeypatch):
    t = nsd.Target.from_model(three_modes_2d)
    modes = nsd.find_modes(t, None, jax.random.PRNGKey(0), num_prior_starts=64)
    assert len(modes) == 3
    x = exact_draws(np.random.default_rng(0), 2000)
    counted = count_ascents(monkeypatch)
    cheap = nsd.assign_basins(t, modes, x)
    # ascended: the points in doubt (between modes) and the 64 + 64 checks, not all 2000
    assert sum(counted) < 400
    np.testing.assert_array_equal(cheap, nsd.assign_basins(t, modes, x, exact=True))


@pytest.mark.slow
def test_a_wrong_guess_is_caught_and_every_point_ascended(monkeypatch):
    # the left mode's log density raised by 100 nats: the guess credits it with every point
    t = nsd.Target.from_model(three_modes_2d)
    modes = nsd.find_modes(t, None, jax.random.PRNGKey(0), num_prior_starts=64)
    left = int(np.argmin(modes.location[:, 0]))
    wrong = dataclasses.replace(modes, log_density=modes.log_density + 100.0 * (np.arange(3) == left))
    x = exact_draws(np.random.default_rng(1), 1000)
    counted = count_ascents(monkeypatch)
    result = nsd.assign_basins(t, wrong, x)
    assert sum(counted) >= len(x)  # the check caught it, so every point was ascended
    np.testing.assert_array_equal(result, nsd.assign_basins(t, wrong, x, exact=True))


@pytest.mark.slow
def test_a_unimodal_audit_ascends_a_few_points_not_every_draw(monkeypatch):
    def correlated():
        numpyro.sample("x", dist.MultivariateNormal(jnp.zeros(5), 0.5 * jnp.eye(5) + 0.5))

    rng = np.random.default_rng(2)
    draws = rng.multivariate_normal(np.zeros(5), 0.5 * np.eye(5) + 0.5, size=(4, 500))
    counted = count_ascents(monkeypatch)
    report = nsd.diagnose(correlated, samples={"exact": {"x": draws}}, methods=(), progress_bar=False)
    assert report.ok and len(report.modes) == 1
    # three point sets (2000 draws, the masses' proposal draws, the repair's pool) at 128
    # checked points each: before, every point of every set was ascended (4000 and more)
    assert sum(counted) <= 3 * (basins.CHECK_FARTHEST + basins.CHECK_RANDOM)


def test_basins_follow_the_ascent_not_the_distance():
    # 0.5 N(-4, 1) + 0.5 N(4, 1): -0.5 is nearer neither mode in a "closest" sense that
    # matters; its ascent goes left. Points far outside go to the nearest tail's mode.
    t = nsd.Target.from_model(two_mode_model)
    modes = nsd.find_modes(t, jnp.array([[-3.0], [3.0]]))
    left = int(np.argmin(modes.location[:, 0]))
    basins = nsd.assign_basins(t, modes, jnp.array([[-0.5], [0.5], [-20.0], [20.0]]))
    np.testing.assert_array_equal(basins, [left, 1 - left, left, 1 - left])
