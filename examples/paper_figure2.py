"""Figure 2 of the paper: SVGD ends with the mixing proportions of where it started.

Target p = pi1 N(-4, 1) + (1 - pi1) N(4, 1); 200 particles start from N(mu0, sigma0^2).
For each cell of the grid pi1 in {0.5, 0.1}, mu0 in {-2, 0, 2}, sigma0 in {1, 5}, runs plain,
annealed and tempered SVGD, prints the final share of particles left of 0 (the right answer
is pi1) and saves the histograms as a PNG.

    .venv/bin/python examples/paper_figure2.py [--steps 2000] [--out paper_figure2.png]
"""

import argparse
import itertools

import jax
import matplotlib.pyplot as plt
import numpy as np
from scipy import stats

import numpyro_stein_diag as nsd
from numpyro_stein_diag.demo import two_mode_model

METHODS = {
    "plain": lambda: nsd.plain(),
    "annealed": lambda: nsd.annealed(),
    "tempered": lambda: nsd.tempered(langevin=1.0),
}


GRID = list(itertools.product((0.5, 0.1), (-2.0, 0.0, 2.0), (1.0, 5.0)))


def run_grid(num_steps, num_particles=200, seed=0, cells=GRID):
    """{(pi1, mu0, sigma0): {method: particles (N,)}}."""
    results = {}
    for pi1, mu0, sigma0 in cells:
        target = nsd.Target.from_model(two_mode_model, weight_left=pi1)
        init = mu0 + sigma0 * jax.random.normal(jax.random.PRNGKey(seed + 1), (num_particles, 1))
        results[pi1, mu0, sigma0] = {
            name: np.asarray(
                nsd.svgd(
                    target,
                    jax.random.PRNGKey(seed),
                    num_particles,
                    num_steps,
                    schedule=make(),
                    init=init,
                    progress_bar=False,
                ).particles[:, 0]
            )
            for name, make in METHODS.items()
        }
    return results


def print_table(results):
    print(f"{'pi1':>4} {'mu0':>4} {'sigma0':>6}  " + "  ".join(f"{m:>8}" for m in METHODS) + "   share left of 0")
    for (pi1, mu0, sigma0), runs in results.items():
        shares = "  ".join(f"{np.mean(x < 0):8.3f}" for x in runs.values())
        print(f"{pi1:4.1f} {mu0:4.0f} {sigma0:6.0f}  {shares}")


def plot(results, path):
    fig, axes = plt.subplots(2, 6, figsize=(18, 5.5), sharex=True, sharey="row", squeeze=False)
    grid = np.linspace(-9, 9, 400)
    for ax, ((pi1, mu0, sigma0), runs) in zip(axes.ravel(), results.items()):
        density = pi1 * stats.norm.pdf(grid, -4, 1) + (1 - pi1) * stats.norm.pdf(grid, 4, 1)
        ax.plot(grid, density, color="black", lw=1.5, label="target")
        for name, x in runs.items():
            ax.hist(
                x,
                bins=np.linspace(-9, 9, 46),
                density=True,
                histtype="step",
                lw=1.3,
                label=f"{name}: {np.mean(x < 0):.2f} left",
            )
        ax.set_title(f"pi1={pi1}, start N({mu0:g}, {sigma0:g}^2)", fontsize=9)
        ax.legend(fontsize=6, loc="upper center")
    fig.suptitle("SVGD keeps its starting proportions; annealing recovers pi1 (share left of 0 in legend)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--out", default="paper_figure2.png")
    parser.add_argument("--quick", action="store_true", help="two cells, for a smoke test")
    args = parser.parse_args(argv)
    results = run_grid(args.steps, cells=GRID[:: len(GRID) // 2] if args.quick else GRID)
    print_table(results)
    plot(results, args.out)
    print(f"saved {args.out}")
    return results


if __name__ == "__main__":
    main()
