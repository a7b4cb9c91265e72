"""The persistent compilation cache is opt-in and does what it says: a later process loads the
programs an earlier one compiled. It runs in subprocesses, so the suite's own JAX settings
(conftest) are never changed by a test."""

import subprocess
import sys

import jax
import pytest

pytestmark = pytest.mark.slow  # two fresh JAX processes, each compiling an audit

AUDIT_SCRIPT = """
import sys, jax, jax.numpy as jnp, numpyro.distributions as dist
import numpyro_stein_diag as nsd
jnp.ones(3).sum()  # something compiled before the cache is turned on: it must still apply
nsd.enable_compilation_cache(sys.argv[1])
potential = lambda z: -jnp.logaddexp(dist.Normal(-3.0, 1.0).log_prob(z), dist.Normal(3.0, 1.0).log_prob(z)).sum()
t = nsd.Target.from_potential(potential, jnp.zeros(1), init_scale=4.0)
masses = nsd.mode_masses(t, nsd.find_modes(t, None, jax.random.PRNGKey(0)), jax.random.PRNGKey(1))
print(len(masses), *masses.mass)
"""


def run_audit(cache_dir):
    out = subprocess.run(
        [sys.executable, "-c", AUDIT_SCRIPT, str(cache_dir)], capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def test_a_later_process_loads_what_an_earlier_one_compiled(tmp_path):
    assert jax.config.jax_compilation_cache_dir is None  # off unless asked for
    first = run_audit(tmp_path)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert len(written) >= 3  # the ascent, the curvature, the log density chunks at least
    again = run_audit(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == written  # every program was found, none compiled anew
    assert again == first and first[0] == "2"  # and the answer is the same
