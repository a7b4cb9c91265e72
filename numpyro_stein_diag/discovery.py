"""Where to start the mode search so that it finds the modes that hold the mass.

Ascents find the modes whose basins their starts lie in. Prior draws reach a mode with the
prior's weight, not the posterior's: a mode that holds 75% of the posterior but 1% of the prior
is missed by 32 prior starts two times in three. Starts distributed like the posterior reach
each mode about as often as it holds mass. They are made by importance resampling: ``M`` prior
draws :math:`x_i` (in the unconstrained space) weighted by their likelihood,

.. math::

    w_i \\propto \\frac{\\pi(x_i)}{p_0(x_i)} = L(x_i),

(the prior density :math:`p_0` includes the transforms' Jacobian, as :math:`\\pi` does, so the
ratio is the likelihood of the constrained values), then ``num_starts`` of them resampled in
proportion to :math:`w` (systematic resampling; each distinct draw is one start). A mode with
prior weight ``a`` and likelihood ratio ``r`` over the rest gets a share ``a r / (a r + 1 - a)``
of the starts, its posterior mass, as long as some of the ``M`` prior draws land in it
(probability :math:`1 - (1 - a)^M`, ``M = 8192``: above 0.9997 for ``a = 0.001``).

The likelihood is every observed site's log probability (``numpyro.infer.util.log_likelihood``,
``numpyro.factor`` terms included; a model with none has likelihood 1, and its starts are prior
draws). A potential has no prior to start from: no starts are made
for it, and the search starts where it did (the init box and the methods' draws).

How complete the search is, the Good-Turing way: with ``n`` ascents that converged and ``f_1``
modes reached by exactly one of them, ``f_1 / n`` estimates the chance that one more start
would reach a mode not yet seen (Good 1953). With posterior-like starts that is an estimate of
the posterior mass in modes the search has not found.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer.util import log_likelihood

from .host import split_keys, systematic_resample
from .target import Target

__all__ = ["posterior_starts", "unseen_chance", "UNSEEN_LIMIT"]

PRIOR_DRAWS = 8192  # prior draws weighed by their likelihood
POSTERIOR_STARTS = 64  # starts resampled from them
# Above this chance of an unseen mode a report is not complete: a mode below 5% of the mass is
# not flagged as missed either (check.py's mass_floor), so the two thresholds say the same thing
UNSEEN_LIMIT = 0.05


@partial(jax.jit, static_argnums=0)
def _log_likelihood(target: Target, x):
    """Sum of every observed site's log probability at each row of ``x (n, d)`` (unconstrained)."""
    call = target.model_call
    latent = target.constrain(x)
    sites = log_likelihood(call.model, latent, *call.args, batch_ndims=1, **call.kwargs)
    return sum((v.reshape(x.shape[0], -1).sum(axis=1) for v in sites.values()), start=jnp.zeros(x.shape[0], x.dtype))


def posterior_starts(
    target: Target, rng_key, num_draws: int = PRIOR_DRAWS, num_starts: int = POSTERIOR_STARTS
) -> np.ndarray:
    """Up to ``num_starts`` distinct starts ``(k, d)`` distributed like the posterior (module
    docstring); none (``(0, d)``) for a potential, which has no prior."""
    if target.kind != "model":
        return np.zeros((0, target.dim))
    k_draws, k_resample = split_keys(rng_key)
    x = np.asarray(target.initial_points(k_draws, num_draws))
    log_w = np.asarray(_log_likelihood(target, x), dtype=float)
    log_w = np.where(np.isfinite(log_w), log_w, -np.inf)
    if not np.isfinite(log_w).any():
        return np.zeros((0, target.dim))
    w = np.exp(log_w - np.max(log_w))
    return x[np.unique(systematic_resample(k_resample, w, num_starts))]


def unseen_chance(start_counts) -> float:
    """Good-Turing estimate :math:`f_1 / n` of the chance that one more start reaches a mode not
    yet found, from the number of converged starts that reached each mode (module docstring)."""
    counts = np.asarray(start_counts)
    total = int(np.sum(counts))
    return float(np.sum(counts == 1) / total) if total else 1.0
