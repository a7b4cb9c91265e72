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
from numpyro_stein_diag import basins, check


def three_modes_2d():
    locs = jnp.array([[-5.0, 0.0], [5.0, 0.0], [0.0, 6.0]])
    components = dist.Normal(locs, jnp.array([1.0, 0.6, 1.5])[:, None]).to_event(1)
    numpyro.sample("x", dist.MixtureSameFamily(dist.Categorical(jnp.array([0.5, 0.3, 0.2])), components))


def exact_draws(rng, n):
    which = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    locs, scales = np.array([[-5.0, 0.0], [5.0, 0.0], [0.0, 6.0]]), np.array([1.0, 0.6, 1.5])
    return locs[which] + scales[which, None] * rng.normal(size=(n, 2))


def count_ascents(monkeypatch, steps=None):
    """The points each basin ascent call ascends (and, into ``steps``, the L-BFGS steps they took:
    one gradient evaluation each, continued ascents included)."""
    counted, original = [], basins.ascend_all

    def counting(target, x0, *args, **kwargs):
        counted.append(len(x0))
        out = original(target, x0, *args, **kwargs)
        if steps is not None:
            steps.append(int(np.sum(out.steps)))
        return out

    monkeypatch.setattr(basins, "ascend_all", counting)
    if steps is not None:
        continuing = nsd.modes.ascend_all

        def continued(target, x0, *args, **kwargs):
            out = continuing(target, x0, *args, **kwargs)
            steps.append(int(np.sum(out.steps)))
            return out

        monkeypatch.setattr(nsd.modes, "ascend_all", continued)  # continue_ascents' own calls
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
    steps = []
    counted = count_ascents(monkeypatch, steps)
    report = nsd.diagnose(correlated, samples={"exact": {"x": draws}}, methods=(), progress_bar=False)
    assert report.ok and len(report.modes) == 1
    # two point sets (the 2000 draws, once for the masses and the check; the masses' proposal draws) at
    # 128 checked points each; a unimodal repair fills nothing. Before, every point of every set was
    # ascended (4000 and more), and later the draws were assigned twice
    assert sum(counted) <= 2 * (basins.CHECK_FARTHEST + basins.CHECK_RANDOM)
    # in gradient evaluations: fewer than one per draw, where one ascent per draw costs tens each
    assert sum(steps) < draws.shape[0] * draws.shape[1]


def test_an_ascent_stops_at_its_expected_mode_and_goes_past_a_wrong_one():
    # a correlated 10-D Gaussian at m; starts 10 sd out. Told to expect m, an ascent stops once within
    # Mahalanobis distance 1 of it (AT_MODE); told to expect a point far from m that is no mode, it climbs to m
    cov = 0.5 * np.eye(10) + 0.5
    t = nsd.Target.from_model(lambda: numpyro.sample("x", dist.MultivariateNormal(jnp.ones(10), jnp.asarray(cov))))
    modes = nsd.find_modes(t, None, jax.random.PRNGKey(0))
    precision = np.linalg.inv(cov)
    starts = (1.0 + 10.0 * np.random.default_rng(3).multivariate_normal(np.zeros(10), cov, 32)).astype(np.float32)

    def distance2(ends):
        return np.einsum("nd,de,ne->n", ends - 1.0, precision, ends - 1.0)

    stopped = nsd.modes.ascend_all(t, starts, 50, modes, np.zeros(32, int))
    assert np.all(distance2(stopped.ends) <= 1.0) and not stopped.rising.any()
    full = nsd.modes.ascend_all(t, starts, 50)
    assert np.all(distance2(full.ends) < 1e-4)
    elsewhere = dataclasses.replace(modes, location=modes.location + 50.0 * np.eye(10)[0])  # no mode there
    wrong = nsd.modes.ascend_all(t, starts, 50, elsewhere, np.zeros(32, int))
    assert np.all(distance2(wrong.ends) < 1e-4)
    assert np.median(distance2(stopped.ends)) > 10 * np.median(distance2(full.ends))  # it did stop short


def test_basins_follow_the_ascent_not_the_distance():
    # 0.5 N(-4, 1) + 0.5 N(4, 1): -0.5 is nearer neither mode in a "closest" sense that
    # matters; its ascent goes left. Points far outside go to the nearest tail's mode.
    t = nsd.Target.from_model(two_mode_model)
    modes = nsd.find_modes(t, jnp.array([[-3.0], [3.0]]))
    left = int(np.argmin(modes.location[:, 0]))
    basins = nsd.assign_basins(t, modes, jnp.array([[-0.5], [0.5], [-20.0], [20.0]]))
    np.testing.assert_array_equal(basins, [left, 1 - left, left, 1 - left])


Y_PRODUCT = np.random.default_rng(0).normal(4.0, 1.0, 50)


def product_model(y=Y_PRODUCT):
    """y ~ N(a b, 1), a, b ~ N(0, 1), 50 rows with a b = 4: modes (a, b) and (-a, -b), two branches
    of the hyperbola a b = 4 with a valley of low density through the origin between them."""
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(a * b, 1.0), obs=y)


def test_chains_stuck_on_one_branch_each_show_no_move_between_modes():
    # 4 chains of exact draws, two on each branch (the posterior on a grid, each half plane a + b > 0
    # or < 0), and in the first chain 3 draws from the valley's side of the positive branch. Their
    # ascents' long first L-BFGS steps jumped across the valley to the other branch: 2 moves each.
    t = nsd.Target.from_model(product_model)
    axis = np.linspace(-4.0, 4.0, 401)
    grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    log_p = nsd.modes.log_densities(t, grid)
    weight = np.exp(log_p - log_p.max())
    rng = np.random.default_rng(1)
    chains = []
    for side in (1, 1, -1, -1):
        w = weight * (side * grid.sum(axis=1) > 0)
        chains.append(grid[rng.choice(len(grid), 300, p=w / w.sum())] + rng.uniform(-0.01, 0.01, (300, 2)))
    draws = np.stack(chains)
    draws[0, [50, 150, 250]] = [[0.25, 0.94], [0.4, 0.9], [0.9, 0.3]]
    modes = nsd.find_modes(t, draws[:, ::50].reshape(-1, 2))
    assert len(modes) == 2
    basins = nsd.assign_basins(t, modes, draws)
    positive = int(np.argmax(modes.location[:, 0]))
    np.testing.assert_array_equal(basins[:2], positive)  # no draw of the positive branch ascends to the other
    np.testing.assert_array_equal(basins[2:], 1 - positive)
    certain = nsd.basins.reached_directly(t, modes, draws, basins)
    assert certain.mean() > 0.95  # exact draws are on their branch: almost all see their mode directly
    assert check.basin_transitions(np.where(certain, basins, -1)).sum() == 0
