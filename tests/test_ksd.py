"""KSD values against closed forms, the Stein identity, the tests' level and power, and verdicts that do not
move with the posterior's location or scale."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from helpers import gaussian, two_mode_model

from numpyro_stein_diag import IMQ, RBF, Target, ksd, ksd_test
from numpyro_stein_diag.ksd import stein_kernel_rows


def bimodal_pm1():
    """0.5 N(-1, 1) + 0.5 N(1, 1) up to a constant."""

    def potential(z):
        return -jnp.logaddexp(dist.Normal(-1, 1).log_prob(z), dist.Normal(1, 1).log_prob(z)).sum()

    return Target.from_potential(potential, jnp.zeros(1))


def numpy_stein_matrix(x):
    """Independent float64 Stein matrix for IMQ(c=1, beta=-1/2, l=1), 1-D, target bimodal_pm1."""
    a, b = np.exp(-0.5 * (x + 1) ** 2), np.exp(-0.5 * (x - 1) ** 2)
    s = (-(x + 1) * a - (x - 1) * b) / (a + b)
    diff = x[:, None] - x[None, :]
    base = 1.0 + diff**2
    k, dk = base**-0.5, diff * base**-1.5  # dk = d/dy k = -d/dx k
    trace = base**-1.5 - 3.0 * diff**2 * base**-2.5
    return s[:, None] * s[None, :] * k + s[:, None] * dk - s[None, :] * dk + trace


@pytest.fixture(scope="module")
def cross_check_draws():
    return np.random.default_rng(0).normal(-1.0, 1.0, 1000)


def test_v_statistic_matches_published_value_and_float64(cross_check_draws):
    x = cross_check_draws
    value = float(ksd(bimodal_pm1(), x[:, None]))
    # 0.174375: kgof, stein-thinning and a closed form agree; float32 round-off ~1e-7
    assert abs(value - 0.174375) < 1e-6
    assert abs(value - numpy_stein_matrix(x).mean()) < 1e-6


def test_u_statistic_and_blocks(cross_check_draws):
    x = cross_check_draws
    h = numpy_stein_matrix(x)
    u_expected = (h.sum() - np.trace(h)) / (1000 * 999)
    t = bimodal_pm1()
    assert abs(float(ksd(t, x[:, None], statistic="u")) - u_expected) < 1e-6
    for block in (1, 7, 333, 1000):  # 7 and 333 do not divide 1000: padded rows must add nothing
        assert abs(float(ksd(t, x[:, None], block_size=block)) - h.mean()) < 2e-6
        assert abs(float(ksd(t, x[:, None], statistic="u", block_size=block)) - u_expected) < 2e-6


@pytest.mark.parametrize("kernel", [IMQ(c=1.3, beta=-0.3, lengthscale=0.7), RBF(lengthscale=1.2)])
def test_closed_form_stein_kernel_equals_autodiff(kernel):
    t = Target.from_potential(lambda z: 0.25 * jnp.sum(z**4) + 0.5 * z[0] * z[1], jnp.zeros(3))
    x = jax.random.normal(jax.random.PRNGKey(0), (6, 3))
    s = t.score(x)
    ell = kernel.lengthscale

    def k(a, b):
        return kernel.profile(jnp.sum((a - b) ** 2) / ell**2)[0]

    def h(a, b):
        sa, sb = t.score(a), t.score(b)
        trace = jnp.trace(jax.jacfwd(jax.grad(k, 1), 0)(a, b))
        return sa @ sb * k(a, b) + sa @ jax.grad(k, 1)(a, b) + sb @ jax.grad(k, 0)(a, b) + trace

    expected = jax.vmap(lambda a: jax.vmap(lambda b: h(a, b))(x))(x)
    np.testing.assert_allclose(stein_kernel_rows(x, s, x, s, kernel, ell), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kernel", [IMQ(), RBF(lengthscale=0.8)])
def test_stein_identity_by_quadrature(kernel):
    # E_{x ~ N(0,1)} h(x, y) = 0 for every y: Gauss-Hermite with 80 nodes is exact to ~1e-7 here
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    weights = weights / weights.sum()
    x = jnp.asarray(nodes)[:, None]
    y = jnp.array([[-2.0], [0.3], [1.5]])
    h = stein_kernel_rows(y, -y, x, -x, kernel, kernel.lengthscale)
    np.testing.assert_allclose(h @ weights, 0.0, atol=1e-5)


def test_level_on_exact_draws():
    # 100 seeds of 200 exact N(0, I_2) draws. Under a test of exact level 0.05 the number of
    # rejections is Binomial(100, 0.05): P(1 <= X <= 12) = 0.993, so the band is defended.
    t = gaussian(dim=2)
    rejections = sum(
        ksd_test(
            t, np.random.default_rng(seed).normal(size=(200, 2)), jax.random.PRNGKey(seed), num_bootstrap=300
        ).pvalue
        < 0.05
        for seed in range(100)
    )
    assert 1 <= rejections <= 12


def test_power_on_a_clearly_wrong_sample():
    t = gaussian(dim=2)
    for seed in range(5):
        wide = np.random.default_rng(seed).normal(scale=1.5, size=(200, 2))
        assert ksd_test(t, wide, jax.random.PRNGKey(seed), num_bootstrap=300).pvalue < 0.01


def ar1_chains(rng, rho, num_chains, num_draws):
    """Stationary AR(1) chains with N(0, 1) marginals: exact MCMC-like draws with autocorrelation."""
    x = np.empty((num_chains, num_draws))
    x[:, 0] = rng.normal(size=num_chains)
    noise = rng.normal(scale=np.sqrt(1 - rho**2), size=(num_chains, num_draws))
    for i in range(1, num_draws):
        x[:, i] = rho * x[:, i - 1] + noise[:, i]
    return x[..., None]


def test_wild_bootstrap_holds_its_level_on_autocorrelated_chains():
    # AR(1), rho = 0.9, 2 chains x 500 draws, 40 seeds. The wild bootstrap is approximate;
    # under level 0.05, Binomial(40, 0.05) exceeds 6 with probability 0.014. Multinomial
    # multipliers ignore the autocorrelation and reject most of these correct chains.
    t = gaussian(dim=1)
    wild, multinomial = 0, 0
    for seed in range(40):
        chains = ar1_chains(np.random.default_rng(seed), 0.9, 2, 500)
        key = jax.random.PRNGKey(seed)
        wild += ksd_test(t, chains, key, num_bootstrap=200).pvalue < 0.05
        if seed < 10:
            multinomial += ksd_test(t, chains, key, num_bootstrap=200, bootstrap="multinomial").pvalue < 0.05
    assert wild <= 6
    assert multinomial >= 5


def test_the_blindness_one_isolated_mode_passes():
    # A documented property, not a virtue: one mode of 0.5 N(-4,1) + 0.5 N(4,1) holding half
    # the mass in the wrong place is rejected about as rarely as exact draws (measured 4-6%).
    # Over 20 seeds, Binomial(20, 0.05) exceeds 4 with probability 0.016.
    t = Target.from_model(two_mode_model)
    rejections = sum(
        ksd_test(
            t, np.random.default_rng(seed).normal(-4.0, 1.0, (1000, 1)), jax.random.PRNGKey(seed), num_bootstrap=200
        ).pvalue
        < 0.05
        for seed in range(20)
    )
    assert rejections <= 4


def test_result_prints_readably():
    t = gaussian(dim=1)
    result = ksd_test(t, np.random.default_rng(0).normal(size=(50, 1)), jax.random.PRNGKey(0), num_bootstrap=99)
    text = str(result)
    assert "p-value" in text and "multinomial" in text and f"{result.pvalue:.3g}" in text
    assert result.n == 50 and 0 < result.pvalue <= 1


@pytest.mark.parametrize(
    "x, message",
    [
        (np.array([[0.0], [np.nan], [1.0]]), "1 of 3 draws contain NaN"),
        (np.zeros((5, 3)), r"expected \(n, 1\)"),
        (np.zeros((1, 1)), "at least 2 draws"),
    ],
)
def test_bad_draws_are_named(x, message):
    with pytest.raises(ValueError, match=message):
        ksd(gaussian(dim=1), x)


def test_score_outside_support_is_named():
    t = Target.from_potential(lambda z: jnp.sum(z) - jnp.sum(jnp.sqrt(z)), jnp.ones(1))
    with pytest.raises(ValueError, match="score grad log p is not finite"):
        ksd(t, np.array([[1.0], [-1.0], [2.0]]))


def test_unknown_options_are_refused():
    t = gaussian(dim=1)
    x = np.zeros((4, 1))
    with pytest.raises(ValueError, match="statistic must be"):
        ksd(t, x, statistic="w")
    with pytest.raises(ValueError, match="bootstrap must be"):
        ksd_test(t, x, jax.random.PRNGKey(0), bootstrap="iid")


@pytest.mark.parametrize("c, s", [(1e3, 1.0), (0.0, 1e-2), (0.0, 1e2), (1e3, 1e-2)])
def test_ksd_test_verdict_does_not_move_with_location_or_scale(c, s):
    rng = np.random.default_rng(1)
    z_exact, z_wide = rng.normal(size=(500, 2)), 1.5 * rng.normal(size=(500, 2))
    key = jax.random.PRNGKey(0)
    reference = [ksd_test(gaussian(0.0, 1.0), z, key, num_bootstrap=200).pvalue for z in (z_exact, z_wide)]
    moved = [ksd_test(gaussian(c, s), c + s * z, key, num_bootstrap=200).pvalue for z in (z_exact, z_wide)]
    # standard units make (z, s_z) the same arrays up to float32 round-off, so the same bootstrap
    # gives the same p-value (one bootstrap draw of slack: 1/201)
    np.testing.assert_allclose(moved, reference, atol=0.01)
    assert reference[0] > 0.05 and reference[1] < 0.01
