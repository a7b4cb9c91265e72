"""Work split over devices: the suite runs on 4 faked CPU devices (conftest); results must equal
the one-device computation up to float32 round-off, and the work must really be split."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import numpyro_stein_diag as nsd
from numpyro_stein_diag.devices import map_rows, row_mesh
from numpyro_stein_diag.kernels import IMQ, RBF
from numpyro_stein_diag.ksd import quadratic_forms, stein_kernel_rows
from numpyro_stein_diag.stein_variational import svgd_direction


def test_the_suite_sees_four_devices_and_meshes_use_a_divisor_of_the_rows():
    assert jax.device_count() == 4
    assert row_mesh().size == 4 and row_mesh(64).size == 4 and row_mesh(50).size == 2 and row_mesh(7).size == 1


def test_map_rows_splits_rows_over_the_devices_and_joins_them_in_order():
    x = jnp.arange(32.0).reshape(16, 2)
    out = jax.jit(map_rows(lambda rows: rows * 2.0 + jax.lax.axis_index("rows"), 16))(x)
    assert len(out.sharding.device_set) == 4
    np.testing.assert_array_equal(np.asarray(out), np.asarray(x) * 2.0 + np.repeat(np.arange(4), 4)[:, None])


def test_sharded_quadratic_forms_equal_the_dense_double_sum():
    # n = 103 is not a multiple of 4 devices x block: padded rows must add nothing; the U
    # statistic's diagonal must be found by global row number on every device
    rng = np.random.default_rng(0)
    x, s = rng.normal(size=(103, 3)), rng.normal(size=(103, 3))
    w = rng.normal(size=(103, 5))
    kernel = IMQ()
    h = np.asarray(
        stein_kernel_rows(jnp.asarray(x), jnp.asarray(s), jnp.asarray(x), jnp.asarray(s), kernel, 1.3), dtype=float
    )
    for exclude in (False, True):
        dense = h - np.diag(np.diag(h)) if exclude else h
        expected = np.einsum("ib,ij,jb->b", w, dense, w)
        got = quadratic_forms(jnp.asarray(x), jnp.asarray(s), jnp.asarray(w), 1.3, kernel, 8, exclude)
        np.testing.assert_allclose(np.asarray(got), expected, rtol=2e-5, atol=1e-4 * np.abs(expected).max())


def test_sharded_svgd_direction_equals_the_dense_formula():
    rng = np.random.default_rng(1)
    x, s = rng.normal(size=(64, 3)), rng.normal(size=(64, 3))
    diff = x[:, None, :] - x[None, :, :]  # x_i - x_j
    k = np.exp(-np.sum(diff**2, -1) / (2 * 0.8**2))
    expected = (k @ s + np.einsum("ij,ijd->id", k, diff) / 0.8**2) / 64  # grad_{x_j} k(x_j, x_i) = k (x_i - x_j) / l^2
    got = svgd_direction(jnp.asarray(x), jnp.asarray(s), RBF(0.8), 0.8)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-6)


ONE_DEVICE_SCRIPT = """
import json, jax, jax.numpy as jnp, numpy as np, numpyro.distributions as dist
import numpyro_stein_diag as nsd
jax.config.update("jax_platforms", "cpu")
assert jax.device_count() == 1
t = nsd.Target.from_potential(lambda z: -dist.Normal(jnp.array([-2.0, 1.0]), 1.0).log_prob(z).sum(), jnp.zeros(2))
run = nsd.svgd(t, jax.random.PRNGKey(0), num_particles=64, num_steps=60, progress_bar=False)
test = nsd.ksd_test(t, run.particles, jax.random.PRNGKey(1), num_bootstrap=200)
print(json.dumps({"particles": np.asarray(run.particles).tolist(), "statistic": test.statistic, "pvalue": test.pvalue}))
"""


@pytest.mark.slow
def test_svgd_and_ksd_test_on_four_devices_equal_the_one_device_run():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    out = subprocess.run([sys.executable, "-c", ONE_DEVICE_SCRIPT], env=env, capture_output=True, text=True, check=True)
    one = json.loads(out.stdout.strip().splitlines()[-1])
    t = nsd.Target.from_potential(lambda z: -dist.Normal(jnp.array([-2.0, 1.0]), 1.0).log_prob(z).sum(), jnp.zeros(2))
    run = nsd.svgd(t, jax.random.PRNGKey(0), num_particles=64, num_steps=60, progress_bar=False)
    test = nsd.ksd_test(t, run.particles, jax.random.PRNGKey(1), num_bootstrap=200)
    # 60 Adam steps carry round-off from reordered sums forward; 1e-4 in units of a posterior sd of 1
    np.testing.assert_allclose(np.asarray(run.particles), np.array(one["particles"]), atol=1e-4)
    np.testing.assert_allclose(test.statistic, one["statistic"], rtol=1e-3)
    assert abs(test.pvalue - one["pvalue"]) <= 2 / 201  # a bootstrap replicate or two may swap sides
