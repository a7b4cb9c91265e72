"""Perturbed KSD: the mode-jump kernel keeps p, the test keeps its level (on autocorrelated chains too)
and sees mode weights, in 100 dimensions too."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from helpers import gaussian, mixture_draws, two_mode_model
from scipy import stats

import numpyro_stein_diag as nsd
from numpyro_stein_diag.perturbed import mode_jump, perturbed_ksd_test


def unequal_model():
    """0.3 N(-4, 0.5^2) + 0.7 N(4, 2^2): unequal weights and widths."""
    mix = dist.MixtureSameFamily(
        dist.Categorical(jnp.array([0.3, 0.7])), dist.Normal(jnp.array([-4.0, 4.0]), jnp.array([0.5, 2.0]))
    )
    numpyro.sample("x", mix)


def exact_unequal(rng, n):
    left = rng.random(n) < 0.3
    return np.where(left, rng.normal(-4, 0.5, n), rng.normal(4, 2.0, n))[:, None]


@pytest.fixture(scope="module")
def unequal():
    t = nsd.Target.from_model(unequal_model)
    return t, nsd.find_modes(t, None, jax.random.PRNGKey(0))


def test_mode_jump_leaves_the_target_invariant(unequal):
    t, modes = unequal
    x = exact_unequal(np.random.default_rng(0), 20000)
    fresh = exact_unequal(np.random.default_rng(1), 20000)[:, 0]
    for theta in (0.5, 1.0, 1.5):
        y = np.asarray(mode_jump(t, x, jax.random.PRNGKey(1), modes, theta))[:, 0]
        # exact draws stay exact: the share left (sd 0.0032) and the whole distribution
        # (two-sample KS against fresh exact draws; a false failure has probability 1e-3)
        share_left = 0.3 * stats.norm.cdf(0, -4, 0.5) + 0.7 * stats.norm.cdf(0, 4, 2.0)
        assert abs(np.mean(y < 0) - share_left) < 0.015
        assert stats.ks_2samp(y, fresh).pvalue > 1e-3


def test_theta_one_repairs_a_one_mode_sample():
    # why theta = 1 is not used: it copies whole components and restores the weights
    t = nsd.Target.from_model(two_mode_model)
    modes = nsd.find_modes(t, None, jax.random.PRNGKey(0))
    x = np.random.default_rng(0).normal(-4.0, 1.0, (4000, 1))
    y = np.asarray(mode_jump(t, x, jax.random.PRNGKey(1), modes, 1.0))
    assert abs(np.mean(y < 0) - 0.5) < 0.05


def exact_equal(rng, n):
    return mixture_draws(rng, 0.5, n)[:, None]


@pytest.mark.parametrize("mixture", ["unequal", "equal"])
def test_level_on_exact_draws(unequal, mixture):
    # 30 seeds at level 0.05: Binomial(30, 0.05) exceeds 5 with probability 0.016
    if mixture == "unequal":
        (t, modes), draw = unequal, exact_unequal
    else:
        t = nsd.Target.from_model(two_mode_model)
        modes, draw = nsd.find_modes(t, None, jax.random.PRNGKey(0)), exact_equal
    rejections = sum(
        perturbed_ksd_test(
            t, draw(np.random.default_rng(s), 200), jax.random.PRNGKey(s), modes=modes, num_bootstrap=200
        ).pvalue
        < 0.05
        for s in range(30)
    )
    assert rejections <= 5


@pytest.mark.parametrize("weight_left", [1.0, 0.8])
def test_power_where_the_plain_test_is_blind(weight_left):
    # one mode (weight 1.0) or 0.8 / 0.2 draws against 0.5 / 0.5 at separation 8, n = 300:
    # measured power 1.0 for both; >= 19 of 20 allows one miss
    t = nsd.Target.from_model(two_mode_model)
    modes = nsd.find_modes(t, None, jax.random.PRNGKey(0))
    rejections = 0
    for s in range(20):
        rng = np.random.default_rng(s)
        x = mixture_draws(rng, weight_left, 300)[:, None]
        rejections += perturbed_ksd_test(t, x, jax.random.PRNGKey(s), modes=modes, num_bootstrap=200).pvalue < 0.05
    assert rejections >= 19


def test_decision_does_not_depend_on_the_order_of_the_draws():
    t = nsd.Target.from_model(two_mode_model)
    modes = nsd.find_modes(t, None, jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    one_mode = rng.normal(-4.0, 1.0, (300, 1))
    exact = mixture_draws(rng, 0.5, 300)[:, None]
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(300)
        assert (
            perturbed_ksd_test(t, one_mode[order], jax.random.PRNGKey(9), modes=modes, num_bootstrap=200).pvalue < 0.01
        )
        assert perturbed_ksd_test(t, exact[order], jax.random.PRNGKey(9), modes=modes, num_bootstrap=200).pvalue > 0.05


def test_chains_use_the_wild_bootstrap_and_split_variant_runs():
    t = nsd.Target.from_model(two_mode_model)
    modes = nsd.find_modes(t, None, jax.random.PRNGKey(0))
    chains = np.random.default_rng(1).normal(-4.0, 1.0, (2, 200, 1))
    result = perturbed_ksd_test(t, chains, jax.random.PRNGKey(0), modes=modes, variant="split", num_bootstrap=200)
    assert result.bootstrap == "wild" and "ospKSD" in result.variant and result.n == 200
    assert result.pvalue < 0.05


def test_one_mode_falls_back_to_the_plain_test():
    t = gaussian(dim=1)
    x = np.random.default_rng(0).normal(size=(100, 1))
    result = perturbed_ksd_test(t, x, jax.random.PRNGKey(0), num_bootstrap=100)
    assert result.variant.startswith("plain") and result.pvalue > 0.05


def test_unknown_variant_is_refused():
    t = gaussian(dim=1)
    with pytest.raises(ValueError, match="variant must be"):
        perturbed_ksd_test(t, np.zeros((4, 1)), jax.random.PRNGKey(0), variant="best")


def two_modes(dim, c=0.0, s=1.0):
    """0.5 N(c - 3 s e1, s^2 I) + 0.5 N(c + 3 s e1, s^2 I)."""
    offset = jnp.zeros(dim).at[0].set(3.0)

    def potential(z):
        u = (z - c) / s
        return -jnp.logaddexp(-0.5 * jnp.sum((u - offset) ** 2), -0.5 * jnp.sum((u + offset) ** 2))

    return nsd.Target.from_potential(potential, jnp.full(dim, c), init_scale=4.0 * s)


@pytest.mark.slow
def test_perturbed_test_keeps_power_in_100_dimensions():
    t = two_modes(100)
    modes = nsd.find_modes(t, None, jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    one_mode = rng.normal(size=(500, 100))
    one_mode[:, 0] -= 3.0
    exact = rng.normal(size=(500, 100))
    exact[:, 0] += np.where(rng.random(500) < 0.5, -3.0, 3.0)
    key = jax.random.PRNGKey(0)
    assert len(modes) == 2
    # measured over 20 seeds (bench/bench_invariance.py): power 1.00, level <= 0.05 at d = 100
    assert nsd.perturbed_ksd_test(t, one_mode, key, modes=modes, num_bootstrap=200).pvalue < 0.01
    assert nsd.perturbed_ksd_test(t, exact, key, modes=modes, num_bootstrap=200).pvalue > 0.05


def switching_chains(seed, num_chains=4, num_draws=500, rho=0.9, switch=0.05):
    """Exact, autocorrelated chains of 0.5 N(-4, 1) + 0.5 N(4, 1): an AR(1) around a mode label
    that is itself a symmetric two-state Markov chain (stationary law: the mixture)."""
    rng = np.random.default_rng(seed)
    z = np.empty((num_chains, num_draws))
    label = np.empty((num_chains, num_draws), bool)
    z[:, 0], label[:, 0] = rng.normal(size=num_chains), rng.random(num_chains) < 0.5
    for i in range(1, num_draws):
        z[:, i] = rho * z[:, i - 1] + np.sqrt(1 - rho**2) * rng.normal(size=num_chains)
        label[:, i] = label[:, i - 1] ^ (rng.random(num_chains) < switch)
    return (np.where(label, 4.0, -4.0) + z)[..., None]


def test_split_perturbed_test_holds_its_level_on_autocorrelated_chains():
    def potential(z):
        return -jnp.logaddexp(dist.Normal(-4, 1).log_prob(z), dist.Normal(4, 1).log_prob(z)).sum()

    t = nsd.Target.from_potential(potential, jnp.zeros(1), init_scale=5.0)
    modes = nsd.find_modes(t, None, jax.random.PRNGKey(0))
    rejections = sum(
        nsd.perturbed_ksd_test(
            t, switching_chains(seed), jax.random.PRNGKey(seed), modes=modes, variant="split", num_bootstrap=200
        ).pvalue
        < 0.05
        for seed in range(20)
    )
    # at level 0.05, P(Binomial(20, 0.05) >= 4) = 0.016; shuffling within chains rejected 13 of 20
    assert rejections <= 3
