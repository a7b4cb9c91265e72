"""The demo: the KSD's blindness to a missing, well-separated mode.

Target ``p = 0.5 N(-4, 1) + 0.5 N(4, 1)``. Draws from the left component alone
hold half the mass in the wrong place, yet the score there is almost exactly
that of ``N(-4, 1)``, so the KSD test passes them; a mild local misfit
(``N(-4, 1.5^2)``) is rejected at once.
"""

from __future__ import annotations

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist

from .diagnose import diagnose
from .ksd import ksd_test
from .target import Target


def two_mode_model(separation: float = 4.0, weight_left: float = 0.5):
    """``x ~ w N(-separation, 1) + (1 - w) N(separation, 1)``."""
    mixing = dist.Categorical(probs=np.array([weight_left, 1.0 - weight_left]))
    components = dist.Normal(np.array([-separation, separation]), 1.0)
    numpyro.sample("x", dist.MixtureSameFamily(mixing, components))


def demo_samples(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """One draw of each of the demo's three samples, ``(n,)`` each."""
    return {
        "exact draws (both modes)": np.where(rng.random(n) < 0.5, -4.0, 4.0) + rng.normal(size=n),
        "left mode only (misses half the mass)": rng.normal(-4.0, 1.0, n),
        "left mode, too wide: N(-4, 1.5^2)": rng.normal(-4.0, 1.5, n),
    }


def run_demo(n: int = 1000, repeats: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    """KSD-test ``repeats`` fresh samples of each kind; print and return their p-values by name."""
    target = Target.from_model(two_mode_model)
    rng = np.random.default_rng(seed)
    keys = jax.random.split(jax.random.PRNGKey(seed), repeats)
    pvalues: dict[str, list[float]] = {}
    for key in keys:
        for name, draws in demo_samples(rng, n).items():
            test = ksd_test(target, draws[:, None], key, num_bootstrap=500)
            pvalues.setdefault(name, []).append(test.pvalue)
    print(f"IMQ-KSD tests against p = 0.5 N(-4, 1) + 0.5 N(4, 1): {repeats} samples of n = {n} each\n")
    print(f"  {'sample':40s} {'median p':>9s} {'rejected at 0.05':>17s}")
    for name, p in pvalues.items():
        p = np.asarray(p)
        print(f"  {name:40s} {np.median(p):9.3f} {np.mean(p < 0.05):16.0%}")
    print(
        "\nThe one-mode sample is rejected no more often than exact draws: the score of a\n"
        "well-separated mode barely depends on the other mode or on the mixing weights.\n"
        "The mode-mass check on one sample of each kind (as 4 chains of n / 4 draws):\n"
    )
    draws = demo_samples(rng, n)
    report = diagnose(
        two_mode_model,
        samples={name.split(" (")[0].split(":")[0]: {"x": x.reshape(4, -1)} for name, x in draws.items()},
        methods=(),
        rng_key=jax.random.PRNGKey(seed),
        progress_bar=False,
    )
    print(report.summary())
    return {name: np.asarray(p) for name, p in pvalues.items()}
