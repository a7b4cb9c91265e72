"""Perturbed KSD (Liu, Duncan & Gandy 2023): make the KSD see mixing proportions.

The plain KSD is blind to the weights of well-separated modes. Perturb the sample with a
Markov kernel ``K`` that leaves ``p`` invariant and jumps between known modes; if
``x ~ p`` then ``xK ~ p`` (the level is kept), while a sample with the wrong weights is
moved in a way the KSD notices. One step, for each point independently: draw an ordered
pair of distinct modes ``(i, j)`` uniformly, propose

.. math::

    x' = \\theta m_j + H_j^{-1/2} H_i^{1/2} (x - \\theta m_i),

and accept with probability :math:`\\min(1, p(x') |J| / p(x))`,
:math:`|J| = (\\det H_i / \\det H_j)^{1/2}`. The map with the pair swapped is its inverse and
pairs are drawn symmetrically, so this is a Metropolis-Hastings kernel for ``p``.
``theta = 1`` copies a whole component onto another and repairs a one-mode sample instead
of exposing it; ``theta`` off 1 exposes it. ``variant="sum"`` (spKSD) sums the KSD over a
grid of ``theta``; ``variant="split"`` (ospKSD) picks the ``theta`` with the largest KSD on
one half of the draws and tests the other half with it.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .devices import map_rows
from .host import numpy_rng, split_keys
from .ksd import (
    TEST_KERNEL,
    KSDTest,
    bootstrap_weights,
    check_bootstrap,
    default_block_size,
    ksd_test,
    points_and_scores,
    quadratic_forms,
    standard_units,
    standardized,
)
from .modes import find_modes
from .target import Target

__all__ = ["perturbed_ksd_test"]

DEFAULT_THETAS = (0.5, 0.75, 1.25, 1.5)


def _jump_maps(hessian):
    """The linear part of the jump from mode ``i`` to mode ``j``, :math:`H_j^{-1/2} H_i^{1/2}`
    (``(K, K, d, d)``, symmetric roots), and its log Jacobian
    :math:`\\tfrac12 (\\log\\det H_i - \\log\\det H_j)` (``(K, K)``), for every ordered pair: K^2 d^2
    numbers once, where a map per draw and step costs a d x d product each time."""
    eig, vec = np.linalg.eigh(np.asarray(hessian))
    root = np.einsum("kde,ke,kfe->kdf", vec, np.sqrt(eig), vec)
    inv_root = np.einsum("kde,ke,kfe->kdf", vec, 1.0 / np.sqrt(eig), vec)
    logdet = np.sum(np.log(eig), axis=-1)
    return np.einsum("jde,ief->ijdf", inv_root, root), 0.5 * (logdet[:, None] - logdet[None, :])


@partial(jax.jit, static_argnums=0)
def _mode_jump(target, x, pairs_from, pairs_to, log_u, loc, jump_maps, theta):
    """The mode-jump steps of every row of ``x (n, d)``; row ``r``'s step ``t`` proposes the jump
    from mode ``pairs_from[r, t]`` to ``pairs_to[r, t]`` and accepts it when ``log_u[r, t]`` is
    below the log acceptance ratio. Each row carries its log density from step to step (one
    evaluation per step, at the proposal). Each device runs its share of the rows."""
    linear, log_jacobian = jump_maps

    def rows(x, pairs_from, pairs_to, log_u):
        def step(carry, draws):
            x, log_p = carry
            i, j, log_u = draws
            proposal = theta * loc[j] + jnp.einsum("nde,ne->nd", linear[i, j], x - theta * loc[i])
            log_p_proposal = target.log_density(proposal)
            log_ratio = log_p_proposal - log_p + log_jacobian[i, j]
            accept = log_u < jnp.where(jnp.isfinite(log_ratio), log_ratio, -jnp.inf)
            return (jnp.where(accept[:, None], proposal, x), jnp.where(accept, log_p_proposal, log_p)), None

        carry = (x, target.log_density(x))
        return jax.lax.scan(step, carry, (pairs_from.T, pairs_to.T, log_u.T))[0][0]

    return map_rows(rows, x.shape[0])(x, pairs_from, pairs_to, log_u)


def mode_jump(target: Target, x, rng_key, modes, theta: float, num_steps: int = 10):
    """Apply ``num_steps`` mode-jump Metropolis steps to every row of ``x (..., d)``.

    The random choices (an ordered pair of distinct modes and a uniform per row and step) are
    drawn on the host (:func:`~numpyro_stein_diag.host.numpy_rng`), so the compiled steps hold
    no random number generator and the result does not depend on how rows are split over devices."""
    x = np.asarray(x)
    flat = x.reshape(-1, target.dim)
    rng, num_modes = numpy_rng(rng_key), len(modes.location)
    pairs_from = rng.integers(0, num_modes, (len(flat), num_steps))
    pairs_to = (pairs_from + rng.integers(1, max(num_modes, 2), pairs_from.shape)) % num_modes
    log_u = np.log(rng.random(pairs_from.shape)).astype(x.dtype)
    maps = tuple(np.asarray(m, x.dtype) for m in _jump_maps(modes.hessian))
    out = _mode_jump(
        target, flat, pairs_from, pairs_to, log_u, np.asarray(modes.location, x.dtype), maps, x.dtype.type(theta)
    )
    return np.asarray(out).reshape(x.shape)


def _summed_forms(target, draws, weights, kernel, block_size, thetas, modes, num_steps, key, units):
    """Sum over ``thetas`` of the quadratic forms ``w^T H_theta w`` of each perturbed sample.

    ``units``: the :func:`~numpyro_stein_diag.ksd.standard_units` of the unperturbed draws,
    applied to every perturbed sample (the same coordinates for all of them), or None for raw
    coordinates. A kernel without a fixed lengthscale resolves it on each perturbed sample.
    """
    total = 0.0
    for theta, k in zip(thetas, split_keys(key, len(thetas))):
        flat, s = points_and_scores(target, mode_jump(target, draws, k, modes, theta, num_steps))
        if units is not None:
            flat, s = standardized(flat, s, units)
        n = flat.shape[0]
        lengthscale = kernel.resolve_lengthscale(flat)
        total = total + np.asarray(
            quadratic_forms(flat, s, weights, lengthscale, kernel, block_size or default_block_size(n), False)
        )
    return total


def _split_halves(x, rng_key):
    """Two halves of the draws: for chains ``(chain, draw, d)`` the first and the second half of
    every chain (time order kept, as the wild bootstrap needs); for independent draws
    ``(n, d)`` a random half and the rest."""
    half = x.shape[-2] // 2
    if x.ndim == 3:
        return x[:, :half], x[:, half:]
    order = numpy_rng(rng_key).permutation(x.shape[0])
    return x[order[:half]], x[order[half:]]


def perturbed_ksd_test(
    target: Target,
    x,
    rng_key,
    modes=None,
    thetas=DEFAULT_THETAS,
    variant: str = "sum",
    num_steps: int = 10,
    kernel=TEST_KERNEL,
    num_bootstrap: int = 1000,
    bootstrap: str | None = None,
    block_size: int | None = None,
    flip_prob: float = 0.02,
    standardize: bool = True,
) -> KSDTest:
    """KSD test of ``x`` (``(n, d)`` or ``(chain, draw, d)``) after the mode-jump perturbation.

    ``modes``: a :class:`~numpyro_stein_diag.modes.Modes` (location and Hessian at least);
    found by :func:`~numpyro_stein_diag.modes.find_modes` from the draws and prior draws
    when None. With fewer than two modes there is nothing to jump between and the result
    is the plain test's (``variant`` says so). V statistics throughout.
    """
    if variant not in ("sum", "split"):
        raise ValueError(f"variant must be 'sum' (spKSD) or 'split' (ospKSD), got {variant!r}.")
    x = np.asarray(x, jnp.result_type(float))  # host side: reshapes and slices compile nothing
    bootstrap = check_bootstrap(x, bootstrap)
    k_modes, k_split, k_perturb, k_boot = split_keys(rng_key, 4)
    if modes is None:
        modes = find_modes(target, x.reshape(-1, target.dim)[:: max(1, x.size // target.dim // 64)], k_modes)
    thetas = tuple(float(t) for t in thetas)
    if len(modes.location) < 2:
        plain = ksd_test(target, x, rng_key, kernel, num_bootstrap, bootstrap, "v", block_size, flip_prob, standardize)
        return dataclasses.replace(plain, setting="fewer than two modes: nothing to perturb")

    def forms(draws, weights, thetas):
        units = standard_units(draws.reshape(-1, target.dim)) if standardize else None
        return _summed_forms(target, draws, weights, kernel, block_size, thetas, modes, num_steps, k_perturb, units)

    if variant == "split":
        select, x = _split_halves(x, k_split)
        size = int(np.prod(select.shape[:-1]))
        mean_weights = np.full((size, 1), 1.0 / size, select.dtype)  # w^T H w with w = 1/n: the V statistic
        scores = [float(forms(select, mean_weights, (t,))[0]) for t in thetas]
        thetas = (thetas[int(np.argmax(scores))],)
    n = int(np.prod(x.shape[:-1]))
    weights = bootstrap_weights(k_boot, x, n, num_bootstrap, bootstrap, flip_prob, x.dtype)
    summed = forms(x, weights, thetas)
    stat, boot = summed[0], summed[1:]
    flat = x.reshape(-1, target.dim)
    lengthscale = kernel.resolve_lengthscale(standardized(flat)[0] if standardize else flat)
    return KSDTest.from_bootstrap(
        stat,
        boot,
        n=n,
        bootstrap=bootstrap,
        kernel=kernel,
        lengthscale=float(lengthscale),
        statistic_type="V",
        standardized=standardize,
        variant="spKSD" if variant == "sum" else "ospKSD",
        setting=f"theta = {', '.join(f'{t:g}' for t in thetas)}, {num_steps} steps, {len(modes.location)} modes",
    )
