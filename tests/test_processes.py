"""Beyond one machine: two processes on localhost, joined by ``jax.distributed.initialize`` (JAX's
CPU collectives, gloo), split the rows over both processes' devices and must give every process
the one-process results, up to float32 round-off."""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # three fresh JAX processes compiling on shared cores: about 25 s

TIMEOUT_S = 120

SCRIPT = """
import json, sys
import jax
jax.config.update("jax_platforms", "cpu")
port, num_processes, process_id = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if num_processes > 1:
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=num_processes,
                               process_id=process_id, initialization_timeout=60)
import jax.numpy as jnp, numpy as np, numpyro.distributions as dist
import numpyro_stein_diag as nsd
from numpyro_stein_diag.devices import row_mesh
mix = dist.MixtureSameFamily(dist.Categorical(jnp.array([0.7, 0.3])), dist.Normal(jnp.array([-2.0, 2.0]), 0.6))
t = nsd.Target.from_potential(lambda z: -mix.log_prob(z[0]) - dist.Normal(1.0, 1.0).log_prob(z[1]), jnp.zeros(2))
draws = np.random.default_rng(0).normal(size=(100, 2)).astype(np.float32)
run = nsd.svgd(t, jax.random.PRNGKey(0), num_particles=64, num_steps=50, progress_bar=False)
test = nsd.ksd_test(t, run.particles, jax.random.PRNGKey(1), num_bootstrap=200)
modes = nsd.find_modes(t, draws, num_iter=50)
print(json.dumps({"devices": [jax.process_count(), jax.device_count(), row_mesh().size],
                  "ksd": float(nsd.ksd(t, draws)), "particles": np.asarray(run.particles).tolist(),
                  "statistic": test.statistic, "pvalue": test.pvalue, "modes": np.asarray(modes.location).tolist()}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(num_processes: int, devices_per_process: int) -> list[subprocess.Popen]:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_per_process}")
    port = str(_free_port())
    return [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT, port, str(num_processes), str(i)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(num_processes)
    ]


def _results(processes: list[subprocess.Popen], deadline: float) -> list[dict]:
    """Each process's JSON line (gloo prints to stdout too: the JSON is the last line); a process
    that fails or outlives the deadline fails the test, and none is left running."""
    try:
        outputs = [p.communicate(timeout=max(deadline - time.monotonic(), 1)) for p in processes]
    except subprocess.TimeoutExpired:
        pytest.fail(f"the processes did not finish within {TIMEOUT_S} s")
    finally:
        for p in processes:
            p.kill()
            p.wait()
    for p, (_, err) in zip(processes, outputs):
        assert p.returncode == 0, err[-3000:]
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]


def test_two_processes_give_each_process_the_one_process_ksd_svgd_and_modes():
    deadline = time.monotonic() + TIMEOUT_S
    pair, single = _launch(2, 2), _launch(1, 1)
    one = _results(single, deadline)[0]
    assert one["devices"] == [1, 1, 1]
    for got in _results(pair, deadline):
        assert got["devices"] == [2, 4, 4]  # the mesh spans both processes' two devices each
        np.testing.assert_allclose(got["ksd"], one["ksd"], rtol=1e-5)  # KSD row blocks on 4 devices
        # 50 Adam steps carry round-off from reordered sums forward; 1e-4 in units of a posterior sd
        np.testing.assert_allclose(np.array(got["particles"]), np.array(one["particles"]), atol=1e-4)
        np.testing.assert_allclose(got["statistic"], one["statistic"], rtol=1e-4)
        assert abs(got["pvalue"] - one["pvalue"]) <= 2 / 201  # a bootstrap replicate or two may swap sides
        # ascents and Hessians split by rows: the same two modes, to the optimizer's tolerance
        np.testing.assert_allclose(np.array(got["modes"]), np.array(one["modes"]), atol=1e-4)
