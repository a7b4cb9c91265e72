"""A label-switching mixture model: two symmetric modes that are one fit, and canonicalize.

y ~ 0.5 N(mu_1, 1) + 0.5 N(mu_2, 1). Swapping mu_1 and mu_2 changes nothing, so the posterior
has two mirror modes of equal mass; NUTS chains each pick one labelling. Without
``canonicalize`` the check sees two modes and flags chains that hold one of them; with
``canonicalize`` (sort the means) both are one mode and the same draws pass.

    .venv/bin/python examples/label_switching.py [--draws 1000] [--out label_switching]
"""

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import numpyro_stein_diag as nsd


def model(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0).expand([2]))
    mixture = dist.MixtureSameFamily(dist.Categorical(jnp.ones(2) / 2), dist.Normal(mu, 1.0))
    numpyro.sample("y", mixture, obs=y)


def data(seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(-3.0, 1.0, 60), rng.normal(3.0, 1.0, 60)])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--out", default="label_switching")
    args = parser.parse_args(argv)
    y = data()
    run = nsd.nuts(
        model, jax.random.PRNGKey(1), y, num_chains=4, num_warmup=args.draws, num_samples=args.draws, progress_bar=False
    )
    labelling = np.asarray(run.samples["mu"][..., 0] < run.samples["mu"][..., 1]).mean(axis=1)
    print(f"share of draws with mu_1 < mu_2, per chain: {np.round(labelling, 2)}\n")
    reports = {
        "as_is": nsd.diagnose(model, y, samples={"nuts": run.mcmc}, methods=(), progress_bar=False),
        "canonical": nsd.diagnose(
            model,
            y,
            samples={"nuts": run.mcmc},
            methods=(),
            progress_bar=False,
            canonicalize=lambda v: {"mu": jnp.sort(v["mu"])},
        ),
    }
    for name, report in reports.items():
        print(f"--- {name} ---\n{report.summary()}\n")
        report.plot(Path(args.out) / name)
    print(f"plots in {args.out}/as_is and {args.out}/canonical")
    return reports


if __name__ == "__main__":
    main()
