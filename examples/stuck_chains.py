"""Stuck NUTS chains, the verdict they get, and the repaired posterior.

Two posteriors where each NUTS chain stays in the mode it starts in, as a user's own run does:

1. label switching: y ~ 0.5 N(mu_1, 1) + 0.5 N(mu_2, 1); swapping mu_1 and mu_2 changes nothing,
   so the two labellings hold exactly half the mass each. 4 chains, 3 started in one
   labelling and 1 in the other: 75% of the draws where 50% belongs.
2. a missed mode: y_i ~ N(theta^2, 1), theta ~ N(0.5, 1) (examples/squared_parameter.py); the
   mode at theta > 0 holds about 88% of the mass. 4 chains started at theta = -2 never see it.

For each: diagnose() before, then the repaired posterior (report.repaired) fed back to
diagnose(). The mode-mass plot shows both side by side; the marginals show the repair.

    .venv/bin/python examples/stuck_chains.py [--draws 1000] [--out stuck_chains]
"""

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from label_switching import data as mixture_data  # noqa: E402  (examples/ is on sys.path when run)
from label_switching import model as mixture_model
from numpyro.infer import MCMC, NUTS
from squared_parameter import grid_mass_positive
from squared_parameter import model as squared_model

import numpyro_stein_diag as nsd
from numpyro_stein_diag.plots import plot_methods, plot_mode_mass


def stuck_nuts(model, starts, draws, *model_args):
    """numpyro NUTS from the given per-chain starting values, as a user would run it."""
    mcmc = MCMC(
        NUTS(model),
        num_warmup=draws,
        num_samples=draws,
        num_chains=len(next(iter(starts.values()))),
        chain_method="sequential",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(0), *model_args, init_params=starts)
    return mcmc


def before_and_after(name, model, mcmc, *model_args):
    """The report on the user's chains, and the report on the chains beside their repair."""
    before = nsd.diagnose(model, *model_args, samples={name: mcmc}, methods=(), progress_bar=False)
    samples = {name: mcmc, "repaired": before.repaired(name)}
    after = nsd.diagnose(model, *model_args, samples=samples, methods=(), progress_bar=False)
    return before, after


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--out", default="stuck_chains")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    y = mixture_data()
    labellings = jnp.array([[-3.0, 3.0], [-3.0, 3.0], [-3.0, 3.0], [3.0, -3.0]])
    mcmc = stuck_nuts(mixture_model, {"mu": labellings}, args.draws, y)
    first = np.asarray(mcmc.get_samples(group_by_chain=True)["mu"][..., 0] < 0).mean(axis=1)
    print(f"label switching: share of each chain's draws with mu_1 < mu_2: {np.round(first, 2)}")
    before, after = before_and_after("nuts_3_1", mixture_model, mcmc, y)
    print(before.summary(), "\n\nrepaired, fed back beside the chains:\n", after.summary(), "\n", sep="")
    pc = plot_mode_mass(after)
    pc.savefig(out / "label_switching_mode_mass.png", bbox_inches="tight")

    y = np.random.default_rng(0).normal(4.0, 1.0, 20)
    mcmc = stuck_nuts(squared_model, {"theta": jnp.full(4, -2.0)}, args.draws, y)
    print(
        f"squared parameter: P(theta > 0 | y) on a grid = {grid_mass_positive(y):.3f}; share of draws "
        f"with theta > 0 = {float((mcmc.get_samples()['theta'] > 0).mean()):.3f}"
    )
    missed, repaired = before_and_after("nuts_all_left", squared_model, mcmc, y)
    print(missed.summary(), "\n\nrepaired, fed back beside the chains:\n", repaired.summary(), sep="")
    plot_methods(repaired).savefig(out / "squared_parameter_methods.png", bbox_inches="tight")
    print(f"\nplots in {out}/")
    return {"label_switching": (before, after), "missed_mode": (missed, repaired)}


if __name__ == "__main__":
    main()
