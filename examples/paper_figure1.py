"""Figure 1 of the paper: two densities that differ by half their mass have nearly the same score.

p = 0.5 N(-4, 1) + 0.5 N(4, 1) and q = N(-4, 1): near -4, where q's draws are, the scores agree
to many digits, so the KSD - an expectation of score terms under q - barely sees the missing mode.
Panels: densities, scores, and the KSD test's p-values over repeated samples of exact draws and
of one-mode draws (their distributions look alike), beside a too-wide sample that is rejected.

    .venv/bin/python examples/paper_figure1.py [--repeats 40] [--out docs/paper_figure1.png]
"""

import argparse

import jax
import matplotlib.pyplot as plt
import numpy as np

import numpyro_stein_diag as nsd
from numpyro_stein_diag.demo import ksd_blindness_table, two_mode_model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--out", default="paper_figure1.png")
    args = parser.parse_args(argv)

    target = nsd.Target.from_model(two_mode_model)
    one_mode = nsd.Target.from_potential(lambda z: 0.5 * jax.numpy.sum((z + 4.0) ** 2), jax.numpy.zeros(1))
    grid = np.linspace(-8, 8, 801)[:, None]
    pvalues = ksd_blindness_table(n=args.n, repeats=args.repeats)

    fig, (ax_d, ax_s, ax_p) = plt.subplots(1, 3, figsize=(14, 3.8))
    ax_d.plot(grid, np.exp(target.log_density(grid)), label="p = 0.5 N(-4,1) + 0.5 N(4,1)")
    ax_d.plot(grid, np.exp(one_mode.log_density(grid)) / np.sqrt(2 * np.pi), "--", label="q = N(-4, 1)")
    ax_d.set_title("densities")
    ax_d.legend(fontsize=8)
    ax_s.plot(grid, target.score(grid), label="score of p")
    ax_s.plot(grid, one_mode.score(grid), "--", label="score of q")
    ax_s.axvspan(-6, -2, color="0.9", label="where q's draws are")
    ax_s.set_ylim(-8, 8)
    ax_s.set_title("scores agree where q puts its draws")
    ax_s.legend(fontsize=8)
    bins = np.linspace(0, 1, 21)
    for name, p in pvalues.items():
        ax_p.hist(
            p,
            bins=bins,
            histtype="step",
            lw=1.5,
            label=f"{name.split(' (')[0].split(':')[0]}: {np.mean(p < 0.05):.0%} rejected",
        )
    ax_p.axvline(0.05, color="red", ls=":")
    ax_p.set_title(f"KSD p-values over {args.repeats} samples of n = {args.n}")
    ax_p.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=90)
    plt.close(fig)
    print(f"saved {args.out}")
    return pvalues


if __name__ == "__main__":
    main()
