"""Kernel Stein discrepancy (KSD): U and V statistics in row blocks, and bootstrap tests.

The Stein kernel of a base kernel ``k`` and the target's score ``s = grad log p`` is

.. math::

    h(x, y) = s(x)^\\top s(y)\\, k(x, y) + s(x)^\\top \\nabla_y k(x, y)
              + s(y)^\\top \\nabla_x k(x, y) + \\operatorname{tr} \\nabla_x \\nabla_y k(x, y),

and :math:`\\mathrm{KSD}^2 = E_{x, y \\sim q}[h(x, y)]`, zero iff ``q = p`` (for a
characteristic kernel and mild tail conditions). The estimators are

.. math::

    V = \\frac{1}{n^2} \\sum_{i, j} h(x_i, x_j), \\qquad
    U = \\frac{1}{n(n - 1)} \\sum_{i \\ne j} h(x_i, x_j).

For a radial kernel every term of ``h`` is a dot product of rows (see
:mod:`numpyro_stein_diag.kernels`), so a block of rows costs a few matrix
products (``S_b S^T``, ``X_b S^T``, ``S_b X^T``, ``X_b X^T``) and memory stays
``O(n * block_size)``: the n x n matrix is never formed for large ``n``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal, get_args

import jax
import jax.numpy as jnp
import numpy as np

from .devices import map_rows, row_mesh
from .host import numpy_rng
from .kernels import IMQ, squared_distances
from .target import Target

__all__ = ["ksd", "ksd_test", "KSDTest"]

BLOCK_ELEMENTS = 2**22  # block_size * n kept near 4M entries (~32 MB per float64 temporary)
# The tests' kernel: IMQ (Gorham & Mackey 2017) with the median pairwise distance as lengthscale,
# in the draws' standard units. A fixed lengthscale goes blind as the dimension grows: pairwise
# distances grow like sqrt(2 d), so every pair sits in the kernel's flat tail; the median grows with
# them (the perturbed test's power in d = 20, 50, 100 is in docs/benchmarks.md).
TEST_KERNEL = IMQ(lengthscale=None)
Variant = Literal["plain", "spKSD", "ospKSD"]  # plain KSD; perturbed summed over theta (spKSD) or split (ospKSD)
VARIANTS: tuple[str, ...] = get_args(Variant)


@dataclass(frozen=True)
class KSDTest:
    """Result of a KSD goodness-of-fit test.

    ``statistic`` is the KSD^2 estimate (``statistic_type`` "V" or "U"), ``pvalue``
    the bootstrap p-value :math:`(1 + \\#\\{b : S^*_b \\ge S\\}) / (B + 1)`. ``variant`` is one of
    :data:`VARIANTS`; ``setting`` says in words how a perturbed test was run (its thetas, jump
    steps and modes), or why it fell back to the plain test.
    """

    statistic: float
    pvalue: float
    n: int
    bootstrap: str
    num_bootstrap: int
    kernel: object
    lengthscale: float
    statistic_type: str = "V"
    variant: Variant = "plain"
    standardized: bool = False  # True: computed in the draws' standard units (see standardized())
    setting: str = ""

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}.")

    @classmethod
    def from_bootstrap(cls, statistic, bootstrap_statistics, **fields) -> KSDTest:
        """The test of ``statistic`` against its ``B`` bootstrap replicates: the one place a p-value
        :math:`(1 + \\#\\{b : S^*_b \\ge S\\}) / (B + 1)` is computed. ``fields``: the others."""
        boot = np.asarray(bootstrap_statistics)
        pvalue = (1.0 + np.sum(boot >= statistic)) / (boot.size + 1.0)
        return cls(statistic=float(statistic), pvalue=float(pvalue), num_bootstrap=int(boot.size), **fields)

    def __str__(self) -> str:
        units = " in standard units" if self.standardized else ""
        variant = f"{self.variant}, {self.setting}" if self.setting else self.variant
        return (
            f"KSD test ({variant}): KSD^2 = {self.statistic:.4g} ({self.statistic_type} statistic{units}), "
            f"p-value = {self.pvalue:.3g}, n = {self.n}, {self.bootstrap} bootstrap "
            f"(B = {self.num_bootstrap}), kernel {self.kernel} with lengthscale {self.lengthscale:.3g}"
        )


def stein_kernel_rows(xb, sb, x, s, kernel, lengthscale):
    """Stein kernel ``h(xb_i, x_j)`` for a block of rows, ``(b, n)``, from matrix products only.

    With :math:`r = \\|x - y\\|^2 / \\ell^2` and :math:`f, f', f''` the kernel's radial profile,

    .. math::

        h = s_x^\\top s_y f + \\frac{2 f'}{\\ell^2} (s_y - s_x)^\\top (x - y)
            - \\frac{4 r f'' + 2 d f'}{\\ell^2}.
    """
    d = x.shape[-1]
    l2 = lengthscale**2
    r = squared_distances(xb, x) / l2
    f, f1, f2 = kernel.profile(r)
    # (s_y - s_x).(x - y) = x.s_y - y.s_y - x.s_x + s_x.y
    cross = xb @ s.T + sb @ x.T - jnp.sum(s * x, -1)[None, :] - jnp.sum(sb * xb, -1)[:, None]
    return (sb @ s.T) * f + (2.0 / l2) * f1 * cross - (4.0 * r * f2 + 2.0 * d * f1) / l2


@partial(jax.jit, static_argnames=("kernel", "block_size", "exclude_diagonal"))
def quadratic_forms(x, s, weights, lengthscale, kernel, block_size, exclude_diagonal):
    """:math:`q_b = \\sum_{i, j} w_{ib} w_{jb} h(x_i, x_j)` for each column of ``weights (n, B)``.

    The rows ``i`` are split over the devices (:func:`~numpyro_stein_diag.devices.map_rows`);
    each device runs through its rows ``block_size`` at a time inside :func:`jax.lax.scan`, the
    unit of work being one row block, ``(block_size, n)``, and the devices' sums are added.
    """
    n = x.shape[0]
    x = x - jnp.mean(x, axis=0)  # h depends on x - y only; centring keeps float32 products exact
    devices = row_mesh().size
    block_size = min(block_size, -(-n // devices))
    per_device = -(-n // (block_size * devices)) * block_size
    pad = per_device * devices - n
    xp, sp, wp = (jnp.pad(a, ((0, pad), (0, 0))) for a in (x, s, weights))  # padded rows weigh 0: they add nothing

    def device_sum(xd, sd, wd, rd):  # one device's rows and their row numbers rd
        def block(total, start):
            xb, sb, wb, rb = (jax.lax.dynamic_slice_in_dim(a, start, block_size) for a in (xd, sd, wd, rd))
            h = stein_kernel_rows(xb, sb, x, s, kernel, lengthscale)
            if exclude_diagonal:
                h = jnp.where(rb[:, None] == jnp.arange(n)[None, :], 0.0, h)
            return total + jnp.sum(wb * (h @ weights), axis=0), None

        total, _ = jax.lax.scan(block, jnp.zeros(weights.shape[1], x.dtype), jnp.arange(0, per_device, block_size))
        return total[None]

    return jnp.sum(map_rows(device_sum, n + pad)(xp, sp, wp, jnp.arange(n + pad)), axis=0)


def default_block_size(n: int) -> int:
    return int(min(n, max(1, BLOCK_ELEMENTS // n)))


def points_and_scores(target: Target, x):
    """Flatten draws to ``(n, d)``, check them, and compute the scores once."""
    x = np.asarray(x)
    if x.ndim < 2 or x.shape[-1] != target.dim:
        raise ValueError(
            f"x has shape {x.shape}; expected (n, {target.dim}) or (chain, draw, {target.dim}) "
            "flat unconstrained draws (use target.unconstrain(samples) for constrained ones)."
        )
    flat = x.reshape(-1, target.dim)
    if flat.shape[0] < 2:
        raise ValueError(f"KSD needs at least 2 draws, got {flat.shape[0]}.")
    bad = ~np.all(np.isfinite(flat), axis=-1)
    if bad.any():
        raise ValueError(
            f"{int(bad.sum())} of {flat.shape[0]} draws contain NaN or inf (first at flat index "
            f"{int(np.argmax(bad))}); drop them before testing."
        )
    _, s = target.log_density_and_score_rows(flat)
    bad = ~np.all(np.isfinite(s), axis=-1)
    if bad.any():
        raise ValueError(
            f"the score grad log p is not finite at {int(bad.sum())} of {flat.shape[0]} draws "
            f"(first at flat index {int(np.argmax(bad))}): those draws lie outside the support "
            "or the model's log density overflows there."
        )
    return jnp.asarray(flat), s


@jax.jit
def standard_units(x):
    """Per-coordinate ``(mean, sd)`` of the rows of ``x``; a coordinate with no spread keeps ``sd = 1``."""
    sd = jnp.std(x, axis=0)
    return jnp.mean(x, axis=0), jnp.where(sd > 0, sd, 1.0)


@jax.jit
def standardized(x, s=None, units=None):
    """Draws and scores in standard units ``(mean, sd)``: ``z = (x - mean) / sd``, ``s_z = sd * s``.

    ``z`` is an affine image of ``x`` and its density's score is, by the chain rule,
    :math:`\\nabla_z \\log p(\\text{mean} + \\text{sd} \\odot z) = \\text{sd} \\odot s(x)`. The KSD of
    ``z`` against that density is therefore a KSD of ``x`` against ``p`` with a diagonal
    preconditioner (zero iff ``q = p``), and with ``units`` taken from the draws
    (:func:`standard_units` of ``x``, the default), shifting or rescaling a coordinate of the
    model leaves ``(z, s_z)``, and every verdict computed from them, unchanged. ``s_z`` is None
    when ``s`` is.
    """
    mean, sd = standard_units(x) if units is None else units
    return (x - mean) / sd, None if s is None else s * sd


def _check_statistic(statistic: str) -> bool:
    if statistic not in ("v", "u"):
        raise ValueError(f"statistic must be 'v' or 'u', got {statistic!r}.")
    return statistic == "u"


def ksd(target: Target, x, kernel=IMQ(), statistic: str = "v", block_size: int | None = None):
    """KSD^2 of the draws ``x`` (``(n, d)`` or ``(chain, draw, d)``, unconstrained) against ``target``.

    ``statistic="v"`` gives the V statistic (biased, non-negative), ``"u"`` the
    unbiased U statistic. ``block_size`` rows are processed at a time (default:
    about 4M kernel entries per block), so memory is ``O(n * block_size)``.
    """
    is_u = _check_statistic(statistic)
    flat, s = points_and_scores(target, x)
    n = flat.shape[0]
    lengthscale = kernel.resolve_lengthscale(flat)
    ones = jnp.ones((n, 1), flat.dtype)
    total = quadratic_forms(flat, s, ones, lengthscale, kernel, block_size or default_block_size(n), is_u)[0]
    return total / (float(n) * (n - 1) if is_u else float(n) * n)


def _multinomial_weights(rng, n, num_bootstrap):
    """``w - 1/n`` with ``n w ~ Multinomial(n; 1/n, ..., 1/n)`` (Liu, Lee & Jordan 2016), ``(n, B)``."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=num_bootstrap).T / n - 1.0 / n


def _wild_weights(rng, num_chains, num_draws, num_bootstrap, flip_prob):
    """+-1 multipliers forming a Markov chain along each chain's draws (Chwialkowski et al. 2016).

    Each multiplier keeps the previous sign except with probability ``flip_prob``;
    chains get independent multiplier processes. Shape ``(chains * draws, B)``.
    """
    start = np.where(rng.random((num_bootstrap, num_chains, 1)) < 0.5, 1.0, -1.0)
    flips = rng.random((num_bootstrap, num_chains, num_draws)) < flip_prob
    flips[..., 0] = False
    signs = start * np.where(np.cumsum(flips, axis=-1) % 2 == 0, 1.0, -1.0)
    return signs.reshape(num_bootstrap, -1).T


def check_bootstrap(x, bootstrap: str | None) -> str:
    """The bootstrap to use: ``"wild"`` for ``(chain, draw, d)`` draws, else ``"multinomial"``."""
    if bootstrap is None:
        return "wild" if jnp.ndim(x) == 3 else "multinomial"
    if bootstrap not in ("multinomial", "wild"):
        raise ValueError(f"bootstrap must be 'multinomial' or 'wild', got {bootstrap!r}.")
    return bootstrap


def bootstrap_weights(rng_key, x, n, num_bootstrap, bootstrap, flip_prob, dtype):
    """``(n, 1 + B)``: a column of ``1/n`` (the statistic) and the ``B`` bootstrap weight vectors,
    drawn on the host (:func:`~numpyro_stein_diag.host.numpy_rng`: nothing to compile)."""
    if num_bootstrap < 1:
        raise ValueError(f"num_bootstrap must be positive, got {num_bootstrap}.")
    rng = numpy_rng(rng_key)
    if bootstrap == "multinomial":
        boot = _multinomial_weights(rng, n, num_bootstrap)
    else:
        chains, draws = (x.shape[0], x.shape[1]) if np.ndim(x) == 3 else (1, n)
        boot = _wild_weights(rng, chains, draws, num_bootstrap, flip_prob) / n
    return np.concatenate([np.full((n, 1), 1.0 / n), boot], axis=1).astype(dtype)


def ksd_test(
    target: Target,
    x,
    rng_key,
    kernel=TEST_KERNEL,
    num_bootstrap: int = 1000,
    bootstrap: str | None = None,
    statistic: str = "v",
    block_size: int | None = None,
    flip_prob: float = 0.02,
    standardize: bool = True,
) -> KSDTest:
    """Bootstrap test of ``H0: x ~ p`` with the KSD.

    ``bootstrap="multinomial"`` (default for ``(n, d)`` draws) assumes independent
    draws: :math:`S^* = \\sum_{i,j} (w_i - 1/n)(w_j - 1/n) h_{ij}` with
    :math:`n w \\sim \\mathrm{Mult}(n; 1/n)` (Liu, Lee & Jordan 2016).
    ``bootstrap="wild"`` (default for ``(chain, draw, d)`` draws) is for Markov
    chains: :math:`S^* = n^{-2} \\sum_{i,j} W_i W_j h_{ij}` with ``W`` a +-1 Markov
    chain that flips sign with probability ``flip_prob`` (Chwialkowski, Strathmann
    & Gretton 2016); independent multipliers would reject most correct but
    autocorrelated chains. For the U statistic the diagonal ``i = j`` is left out
    of both the statistic and the bootstrap.

    ``standardize=True`` (default) computes the statistic in per-coordinate standard
    units (:func:`standardized`), so the verdict does not depend on where the posterior sits or
    how wide it is; ``False`` tests the raw coordinates (with ``kernel=IMQ()`` the statistic is
    then the value :func:`ksd` returns). The default kernel is :data:`TEST_KERNEL`.
    """
    is_u = _check_statistic(statistic)
    x = np.asarray(x, jnp.result_type(float))  # host side: reshapes and slices compile nothing
    bootstrap = check_bootstrap(x, bootstrap)
    flat, s = points_and_scores(target, x)
    if standardize:
        flat, s = standardized(flat, s)
    n = flat.shape[0]
    weights = bootstrap_weights(rng_key, x, n, num_bootstrap, bootstrap, flip_prob, flat.dtype)
    lengthscale = kernel.resolve_lengthscale(flat)
    forms = np.asarray(
        quadratic_forms(flat, s, weights, lengthscale, kernel, block_size or default_block_size(n), is_u)
    )
    scale = n / (n - 1.0) if is_u else 1.0  # weights of 1/n give sum_{i != j} h / n^2
    return KSDTest.from_bootstrap(
        forms[0] * scale,
        forms[1:] * scale,
        n=n,
        bootstrap=bootstrap,
        kernel=kernel,
        lengthscale=float(lengthscale),
        statistic_type="U" if is_u else "V",
        standardized=standardize,
    )
