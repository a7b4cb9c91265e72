"""Mode masses: the ModeMasses record's checked fields, a check that refuses masses of other modes, importance
masses where Laplace is biased, Pareto-smoothed weights that fall back to Laplace on tails the proposal
cannot cover, and intervals that cover the true mass."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from helpers import modes_and_masses
from scipy import optimize, stats

import numpyro_stein_diag as nsd
from numpyro_stein_diag.masses import without_masses


def two_modes():
    return nsd.Modes(
        location=np.array([[-1.0], [1.0]]),
        log_density=np.zeros(2),
        hessian=np.ones((2, 1, 1)),
        laplace_log_mass=np.log([0.5, 0.5]),
        values={"x": np.array([-1.0, 1.0])},
    )


def test_the_mass_method_and_the_shapes_are_checked():
    with pytest.raises(ValueError, match=r"mass_method must be one of \('importance', 'laplace', 'none'\)"):
        nsd.ModeMasses(np.ones(2) / 2, np.zeros(2), 0.1, 0.0, mass_method="Laplace")
    with pytest.raises(ValueError, match=r"one length, got shapes \(2,\) and \(3,\)"):
        nsd.ModeMasses(np.ones(2) / 2, np.zeros(3), 0.1, 0.0, mass_method="importance")


def test_masses_not_estimated_are_nan_and_raise_no_flag():
    masses = without_masses(2)
    assert len(masses) == 2 and not masses.estimated and np.isnan(masses.mass).all()
    check = nsd.check_mode_mass("m", np.array([[0, 0, 0, 0]]), two_modes(), masses, independent=True)
    assert check.flags == ()


def test_the_check_refuses_masses_of_other_modes():
    three = nsd.ModeMasses(np.ones(3) / 3, np.full(3, 0.01), 0.1, 0.0, mass_method="importance")
    with pytest.raises(ValueError, match="masses holds 3 modes' masses for 2 modes"):
        nsd.check_mode_mass("m", np.array([[0, 1]]), two_modes(), three, independent=True)


def test_heavy_tails_the_proposal_cannot_cover_fall_back_to_laplace():
    # Student-t with 0.5 degrees of freedom: weights against the t_5 proposal grow like |y|^4.5,
    # a Pareto tail with k = 0.9; the smoothed weights' k-hat must see it. One estimate is noisy
    # (measured over 20 seeds at 8000 draws: mean 0.83, 18 of 20 above 0.7), so the median of 5
    # seeds is tested, and every estimate above the limit must have fallen back to Laplace
    t = nsd.Target.from_potential(lambda z: -dist.StudentT(0.5).log_prob(z).sum(), jnp.zeros(1))
    found = nsd.find_modes(t, None, jax.random.PRNGKey(0))
    runs = [nsd.mode_masses(t, found, jax.random.PRNGKey(seed), num_draws=8000) for seed in range(5)]
    assert np.median([m.pareto_k for m in runs]) > 0.7
    assert all(m.mass_method == "laplace" for m in runs if m.pareto_k > 0.7)


def test_mass_intervals_cover_the_true_mass():
    def potential(z):
        return -jnp.logaddexp(
            jnp.log(0.3) + dist.Normal(-3, 1).log_prob(z), jnp.log(0.7) + dist.Normal(3, 1).log_prob(z)
        ).sum()

    t = nsd.Target.from_potential(potential, jnp.zeros(1), init_scale=4.0)
    modes = nsd.find_modes(t, None, jax.random.PRNGKey(0))
    left = int(np.argmin(modes.location[:, 0]))
    # basins split at the density minimum x0; the left basin's mass is the mixture's cdf there
    grid = np.linspace(-3, 3, 6001)
    density = 0.3 * stats.norm.pdf(grid, -3) + 0.7 * stats.norm.pdf(grid, 3)
    x0 = grid[np.argmin(density)]
    truth = 0.3 * stats.norm.cdf(x0, -3) + 0.7 * stats.norm.cdf(x0, 3)
    covered = 0
    for seed in range(30):
        m = nsd.mode_masses(t, modes, jax.random.PRNGKey(seed))
        covered += abs(m.mass[left] - truth) <= 2 * m.mass_se[left]
    # a +-2 se normal interval covers 95%; asked: at least 90%, 27 of 30 seeds (measured 29; with
    # 300 draws per mode instead of the default 2000 the se runs 10% small and 26 of 30 cover)
    assert covered >= 27


def test_heavy_tailed_mode_where_laplace_is_biased():
    # 0.4 t_2(-10, 1) + 0.6 N(10, 1): Laplace gives the t mode ~0.33 (its curvature hides the
    # heavy tails); the exact basin mass comes from the density minimum between the modes.
    def log_p(z):
        return jnp.logaddexp(
            jnp.log(0.4) + dist.StudentT(2.0, -10.0, 1.0).log_prob(z), jnp.log(0.6) + dist.Normal(10.0, 1.0).log_prob(z)
        ).sum()

    t = nsd.Target.from_potential(lambda z: -log_p(z), jnp.zeros(1), init_scale=10.0)
    boundary = optimize.minimize_scalar(lambda z: -float(log_p(jnp.array([z]))), bounds=(-5, 9), method="bounded").x
    truth_left = 0.4 * stats.t.cdf(boundary + 10.0, 2) + 0.6 * stats.norm.cdf(boundary - 10.0)
    modes, masses = modes_and_masses(t)
    left = int(np.argmin(modes.location[:, 0]))
    assert abs(modes.laplace_mass[left] - truth_left) > 0.05  # Laplace alone is off
    assert abs(masses.mass[left] - truth_left) < max(0.03, 3 * masses.mass_se[left])
