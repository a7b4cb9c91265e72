"""Mode flags on real NUTS chains: false alarms where chains mix, verdicts where they do not.

For each seed, numpyro NUTS (4 chains x 1000 warm-up + 1000 draws, started from prior draws as
diagnose() starts them) on two mixtures, then diagnose(samples={"nuts": mcmc}, methods=()):

- close modes, 0.3 N(-2, 1) + 0.7 N(2, 1): the valley is shallow and NUTS crosses it freely, so
  the share is a correct sample's share; any mode flag is a false alarm;
- far modes, 0.3 N(-3, 1) + 0.7 N(3, 1): NUTS crosses rarely, the share carries the starts.

Printed per posterior: how often the chains were judged mixing, transitions per chain, how
often a mode flag was raised, and for the far modes the flags against the size of the error
(|share - mass| above 0.10, within 0.05), with the repaired posterior's share beside it.

    .venv/bin/python bench/bench_mixing.py [--seeds 20]
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import numpyro_stein_diag as nsd

MODE_FLAGS = {"missed_mode", "misweighted_mode"}


def mixture(separation):
    def model():
        components = dist.Normal(jnp.array([-separation, separation]), 1.0)
        numpyro.sample("x", dist.MixtureSameFamily(dist.Categorical(jnp.array([0.3, 0.7])), components))

    return model


def one_seed(model, seed):
    run = nsd.nuts(model, jax.random.PRNGKey(seed), num_chains=4, num_warmup=1000, num_samples=1000, progress_bar=False)
    report = nsd.diagnose(
        model, samples={"nuts": run.mcmc}, methods=(), progress_bar=False, rng_key=jax.random.PRNGKey(1000 + seed)
    )
    check = report.checks["nuts"]
    left = int(np.argmin(report.modes.location[:, 0]))
    repaired = report.repaired("nuts")["posterior"]["x"].values
    basins = nsd.assign_basins(nsd.Target.from_model(model), report.modes, repaired[..., None])
    return dict(
        modes=len(report.modes),
        mixing=check.mixing,
        transitions=float(np.mean(check.transitions)),
        flagged=bool({f.kind for f in report.flags} & MODE_FLAGS),
        off=abs(check.observed_share[left] - check.expected_mass[left]) if len(report.modes) == 2 else np.nan,
        share=check.observed_share[left] if len(report.modes) == 2 else np.nan,
        mass=check.expected_mass[left] if len(report.modes) == 2 else np.nan,
        repaired=float(np.mean(basins == left)),
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()
    for name, separation in (("close modes (+-2)", 2.0), ("far modes (+-3)", 3.0)):
        rows = [one_seed(mixture(separation), seed) for seed in range(args.seeds)]
        pick = lambda key: np.array([r[key] for r in rows])  # noqa: E731
        off, flagged = pick("off"), pick("flagged")
        print(
            f"{name}: {args.seeds} seeds; two modes found {np.sum(pick('modes') == 2)}; mixing "
            f"{pick('mixing').sum()}; transitions per chain median {np.median(pick('transitions')):.0f}; "
            f"mode flag {flagged.sum()}"
        )
        print(
            f"  |share - mass| > 0.10: {np.sum(off > 0.10)} seeds, flagged {np.sum(flagged & (off > 0.10))}; "
            f"<= 0.05: {np.sum(off <= 0.05)} seeds, flagged {np.sum(flagged & (off <= 0.05))}"
        )
        print(
            "  left share before -> repaired (mass): "
            + ", ".join(f"{r['share']:.2f}->{r['repaired']:.2f} ({r['mass']:.2f})" for r in rows[:8]),
            flush=True,
        )


if __name__ == "__main__":
    main()
