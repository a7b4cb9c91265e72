"""Verdicts that do not depend on where the posterior sits, how wide it is, or its dimension;
and the numerical defects that made them depend on it. Each tolerance is stated where it is used."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import numpyro_stein_diag as nsd
from numpyro_stein_diag.kernels import kth_smallest, median_lengthscale, squared_distances
from numpyro_stein_diag.stein_variational import smoothed_score

from helpers import gaussian


def two_modes(dim, c=0.0, s=1.0):
    """0.5 N(c - 3 s e1, s^2 I) + 0.5 N(c + 3 s e1, s^2 I)."""
    offset = jnp.zeros(dim).at[0].set(3.0)

    def potential(z):
        u = (z - c) / s
        return -jnp.logaddexp(-0.5 * jnp.sum((u - offset) ** 2), -0.5 * jnp.sum((u + offset) ** 2))

    return nsd.Target.from_potential(potential, jnp.full(dim, c), init_scale=4.0 * s)


def test_squared_distances_far_from_zero_match_float64():
    x = 1000.0 + np.random.default_rng(0).normal(size=(50, 3))
    exact = np.sum((x[:, None] - x[None]) ** 2, -1)
    got = np.asarray(squared_distances(jnp.asarray(x, jnp.float32), jnp.asarray(x, jnp.float32)))
    # float32 holds 1000 + u to 6e-5; unit-scale distances squared are then good to ~1e-3
    assert np.max(np.abs(got - exact)) < 5e-3


def test_median_lengthscale_is_exact_with_an_outlier():
    x = np.concatenate([np.random.default_rng(0).normal(size=(30, 2)), [[1000.0, 0.0]]])
    pairs = np.sqrt(np.sum((x[:, None] - x[None]) ** 2, -1))[np.triu_indices(31, 1)]
    # float32 with one point 1000 away: ~1e-5 relative round-off. The outlier makes the largest squared
    # distance 1e6, so bisecting values with a fixed number of halvings (precision relative to the
    # largest) cannot resolve a median near 1; bisecting bit patterns (kth_smallest) is exact
    assert float(median_lengthscale(jnp.asarray(x))) == pytest.approx(np.median(pairs), rel=1e-4)


def test_kth_smallest_is_exact():
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 8128):
        values = (rng.random(n) ** 3 * 1e4).astype(np.float32)  # skewed, many near 0
        values[: n // 3] = values[n // 3 : 2 * (n // 3)]  # ties
        for k in sorted({1, (n + 1) // 2, n}):
            assert float(kth_smallest(jnp.asarray(values), k)) == np.sort(values)[k - 1]
    assert float(kth_smallest(jnp.zeros(5), 3)) == 0.0


@pytest.mark.parametrize("c, s", [(1e3, 1.0), (0.0, 1e-2), (0.0, 1e2), (1e3, 1e-2)])
def test_ksd_test_verdict_does_not_move_with_location_or_scale(c, s):
    rng = np.random.default_rng(1)
    z_exact, z_wide = rng.normal(size=(500, 2)), 1.5 * rng.normal(size=(500, 2))
    key = jax.random.PRNGKey(0)
    reference = [nsd.ksd_test(gaussian(0.0, 1.0), z, key, num_bootstrap=200).pvalue for z in (z_exact, z_wide)]
    moved = [nsd.ksd_test(gaussian(c, s), c + s * z, key, num_bootstrap=200).pvalue for z in (z_exact, z_wide)]
    # standard units make (z, s_z) the same arrays up to float32 round-off, so the same bootstrap
    # gives the same p-value (one bootstrap draw of slack: 1/201)
    np.testing.assert_allclose(moved, reference, atol=0.01)
    assert reference[0] > 0.05 and reference[1] < 0.01


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
        nsd.perturbed_ksd_test(t, switching_chains(seed), jax.random.PRNGKey(seed), modes=modes,
                               variant="split", num_bootstrap=200).pvalue < 0.05
        for seed in range(20)
    )
    # at level 0.05, P(Binomial(20, 0.05) >= 4) = 0.016; shuffling within chains rejected 13 of 20
    assert rejections <= 3


def test_svgd_far_from_zero_is_as_good_as_at_zero():
    cov = np.array([[1.0, 0.8], [0.8, 1.0]])
    precision = jnp.asarray(np.linalg.inv(cov))
    results = []
    for c in (0.0, 1e3):
        t = nsd.Target.from_potential(lambda z, c=c: 0.5 * (z - c) @ precision @ (z - c), jnp.full(2, c))
        x = np.asarray(nsd.svgd(t, jax.random.PRNGKey(0), 100, 300, progress_bar=False).draws[0], np.float64)
        results.append((x.mean(0) - c, np.cov(x.T)))
    # the same particles up to float32 round-off at 1000 (6e-5): raw coordinates moved the mean
    # by 5e-3 and the covariance by 3e-2
    np.testing.assert_allclose(results[1][0], results[0][0], atol=1e-3)
    np.testing.assert_allclose(results[1][1], results[0][1], atol=1e-3)


def test_svgd_called_twice_compiles_once(count_calls):
    from numpyro_stein_diag.stein_variational import SVGDKernel, _run_chunk

    t = gaussian(dim=2)
    steps, densities = count_calls(SVGDKernel, "step"), count_calls(nsd.Target, "_log_density_1d")
    programs = _run_chunk._cache_size()
    for seed in range(2):  # 100 steps in 3 checkpoints: chunks of 34, the last padded
        nsd.svgd(t, jax.random.PRNGKey(seed), 16, 100, num_checkpoints=3, progress_bar=False)
    assert len(steps) == 1  # the scan's step traced once for both runs
    assert len(densities) == 2  # the model traced once in that step, once in the KSD checkpoints' score
    # and compiled once: the first chunk's state is laid out over the 4 devices as later chunks
    # get it back (a different layout compiles again without tracing again); t is alive, so its
    # cache entry cannot have been dropped
    assert _run_chunk._cache_size() == programs + 1


def test_padded_steps_change_nothing():
    t = gaussian(dim=2)
    runs = [nsd.svgd(t, jax.random.PRNGKey(0), 16, 100, num_checkpoints=k, progress_bar=False) for k in (4, 3)]
    np.testing.assert_allclose(runs[0].draws, runs[1].draws, rtol=1e-5, atol=1e-6)
    assert len(runs[1].history["step_norm"]) == 100 and list(runs[1].history["ksd_step"]) == [34, 68, 100]


def test_chain_resolves_each_sigma_once():
    t = gaussian(0.0, 1.0)
    key = jax.random.PRNGKey(0)
    spread = nsd.annealed().resolve(t, key).level(jnp.zeros(()))[1]
    resolved = nsd.chain(nsd.annealed(sigma_max=10.0), nsd.annealed()).resolve(t, key)
    # sigmas add in variance: the given 10 stays 10, the other part gets the target's spread
    np.testing.assert_allclose(resolved.level(jnp.zeros(()))[1], np.hypot(10.0, spread), rtol=1e-5)


def test_annealing_noise_is_per_coordinate_and_robust_to_heavy_tails():
    def model():
        numpyro.sample("wide", dist.Normal(1e3, 100.0))
        numpyro.sample("narrow", dist.Normal(0.0, 0.01))
        numpyro.sample("heavy", dist.Cauchy(0.0, 1.0))

    t = nsd.Target.from_model(model)
    sigma = dict(zip(t.coordinate_names, np.asarray(nsd.annealed().resolve(t, jax.random.PRNGKey(0)).level(jnp.zeros(()))[1])))
    # twice each coordinate's spread: 200 and 0.02 (the central 90% range of 512 draws: within
    # 15%), and for the Cauchy twice q_0.95 / 1.645 = 7.7 (the quantile's sd over 512 draws is 20%),
    # where the sample sd of 512 Cauchy draws runs to the tens or hundreds
    assert sigma["wide"] == pytest.approx(200.0, rel=0.15) and sigma["narrow"] == pytest.approx(0.02, rel=0.15)
    assert sigma["heavy"] == pytest.approx(2 * np.tan(0.45 * np.pi) / 1.6449, rel=0.5)


def test_smoothed_score_gives_points_outside_the_support_no_weight():
    # N(1, 1) truncated to x > 0: log density and score are NaN at negative points
    t = nsd.Target.from_potential(lambda z: jnp.sum(0.5 * (z - 1.0) ** 2 - jnp.log(jnp.sign(z))), jnp.ones(1))
    x = jnp.array([[0.3], [2.0]])
    noise = jax.random.normal(jax.random.PRNGKey(0), (2, 64, 1))
    got = np.asarray(smoothed_score(t, x, 1.0, noise))
    assert np.all(np.isfinite(got))
    y = np.asarray(x[:, None, :] + noise)[..., 0]
    log_p = np.where(y > 0, -0.5 * (y - 1.0) ** 2, -np.inf)
    w = np.exp(log_p - log_p.max(1, keepdims=True))
    expected = np.sum(w * (1.0 - y), 1) / w.sum(1)  # SNIS over the points inside the support
    np.testing.assert_allclose(got[:, 0], expected, rtol=1e-4)


def test_nuts_on_a_potential_without_spread_starts_every_chain():
    t = gaussian(0.0, 1.0)
    run = nsd.nuts(t, jax.random.PRNGKey(0), num_chains=2, num_warmup=50, num_samples=50,
                   init_spread=False, progress_bar=False)
    assert run.draws.shape == (2, 50, 2) and np.all(np.isfinite(run.draws))
