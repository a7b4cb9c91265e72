"""Test-wide configuration: the one place that sets jax / XLA options and the plot backend; and the
fixtures that tests in more than one file use (module-scoped ones are built once in each file that uses them)."""

import os
import sys

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import jax  # noqa: E402

jax.config.update("jax_platforms", "cpu")


import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
from helpers import ar1, mixture_draws, sojourns, two_mode_model  # noqa: E402

import numpyro_stein_diag as nsd  # noqa: E402


@pytest.fixture
def count_calls(monkeypatch):
    """``count_calls(cls, name)`` -> a list that grows by one at every call of ``cls.name``.

    Inside jit a Python function runs only when it is traced, so this counts compilations (the
    idea of chex.assert_max_traces) without reading jit caches, whose entries come and go as the
    objects they are keyed on are collected."""

    def patch(cls, name):
        calls, original = [], getattr(cls, name)

        def counted(*args, **kwargs):
            calls.append(1)
            return original(*args, **kwargs)

        monkeypatch.setattr(cls, name, counted)
        return calls

    return patch


@pytest.fixture(autouse=True)
def close_figures():
    """Each test's figures closed after it (pyplot keeps every figure it opened)."""
    yield
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


@pytest.fixture(scope="module")
def equal_mass_report():
    """Four chains of 500 draws each on 0.5 N(-4, 1) + 0.5 N(4, 1), stuck or crossing rarely."""
    rng = np.random.default_rng(0)
    samples = {
        "stuck_3_1": {"x": np.stack([ar1(rng, c, (500,)) for c in (-4, -4, -4, 4)])},
        "stuck_2_2": {"x": np.stack([ar1(rng, c, (500,)) for c in (-4, -4, 4, 4)])},
        "all_in_one": {"x": ar1(rng, 4.0, (4, 500))},
        # 5 crossings in 2000 draws, 65% left where 50% belongs
        "rare_crossing": {
            "x": np.stack(
                [
                    sojourns(rng, (-4, 500)),
                    sojourns(rng, (-4, 300), (4, 100), (-4, 100)),
                    sojourns(rng, (4, 200), (-4, 200), (4, 100)),
                    sojourns(rng, (-4, 200), (4, 300)),
                ]
            )
        },
    }
    return nsd.diagnose(two_mode_model, weight_left=0.5, samples=samples, methods=(), progress_bar=False)


@pytest.fixture(scope="module")
def report():
    """Two methods on 0.3 N(-4, 1) + 0.7 N(4, 1): exact draws (2 x 300) and one chain in the right mode only."""
    rng = np.random.default_rng(0)
    samples = {"exact": {"x": mixture_draws(rng, 0.3, (2, 300))}, "one_mode": {"x": rng.normal(4.0, 1.0, (1, 150))}}
    return nsd.diagnose(two_mode_model, weight_left=0.3, samples=samples, methods=(), progress_bar=False)


@pytest.fixture(scope="module")
def two_mode_report():
    """Three methods on 0.3 N(-4, 1) + 0.7 N(4, 1), 4 chains x 500 independent draws each: exact, in the right
    mode only, and with the weights 0.6 / 0.4."""
    rng = np.random.default_rng(0)
    samples = {
        "exact": {"x": mixture_draws(rng, 0.3, (4, 500))},
        "one_mode": {"x": rng.normal(4.0, 1.0, (4, 500))},
        "wrong_weights": {"x": mixture_draws(rng, 0.6, (4, 500))},
    }
    return nsd.diagnose(two_mode_model, weight_left=0.3, samples=samples, methods=(), progress_bar=False)


@pytest.fixture(scope="module")
def one_chain_report():
    """0.3 N(-4, 1) + 0.7 N(4, 1): 2000 exact draws as one chain (as MixtureGuidePredictive's draws arrive),
    declared independent or not, and one chain stuck in the right mode."""
    rng = np.random.default_rng(3)
    exact = mixture_draws(rng, 0.3, (1, 2000))
    posterior = xr.Dataset({"x": (("chain", "draw"), exact)}, attrs={"independent": 1})
    tree = xr.DataTree.from_dict({"posterior": posterior})
    samples = {
        "declared": {"x": exact},
        "tree": tree,  # declared by the DataTree's own attribute
        "one_chain": {"x": exact},  # the same draws, not declared: a chain that moves freely
        "stuck": {"x": rng.normal(4.0, 1.0, (1, 2000))},  # a chain that never leaves the right mode
    }
    return nsd.diagnose(
        two_mode_model, weight_left=0.3, samples=samples, independent={"declared"}, methods=(), progress_bar=False
    )
