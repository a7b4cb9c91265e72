"""Kernel pieces in float32: squared distances far from zero, the median lengthscale with an outlier,
and the exact k-th smallest value it rests on."""

import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_stein_diag.kernels import kth_smallest, median_lengthscale, squared_distances


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
