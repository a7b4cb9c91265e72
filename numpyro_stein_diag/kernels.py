"""Radial kernels and the closed-form pieces the Stein kernel needs.

Both kernels are radial, :math:`k(x, y) = f(r)` with :math:`r = \\|x - y\\|^2 / \\ell^2`,
so every derivative the Stein kernel needs follows from :math:`f, f', f''`:

.. math::

    \\nabla_x k = \\tfrac{2 f'(r)}{\\ell^2} (x - y), \\qquad
    \\nabla_y k = -\\nabla_x k, \\qquad
    \\operatorname{tr} \\nabla_x \\nabla_y k = -\\tfrac{4 r f''(r) + 2 d f'(r)}{\\ell^2}.

Pairwise, these are dot products of rows (:math:`X X^\\top` etc.), so callers
build them with matrix products instead of nested autodiff over an n x n grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

__all__ = ["RBF", "IMQ"]

MEDIAN_SUBSAMPLE = 128  # points used by the median heuristic; its cost stays O(128^2)


@dataclass(frozen=True)
class RBF:
    """Gaussian kernel :math:`k = \\exp(-\\|x - y\\|^2 / (2 \\ell^2))`.

    ``lengthscale=None`` uses the median heuristic of Liu & Wang (2016):
    :math:`2 \\ell^2 = \\mathrm{med}^2 / \\log(n + 1)`.
    """

    lengthscale: float | None = None

    def profile(self, r):
        """:math:`f, f', f''` at :math:`r = \\|x-y\\|^2/\\ell^2`."""
        f = jnp.exp(-0.5 * r)
        return f, -0.5 * f, 0.25 * f

    def resolve_lengthscale(self, x):
        if self.lengthscale is not None:
            return jnp.asarray(self.lengthscale, x.dtype)
        n = x.shape[0]
        return median_lengthscale(x) / jnp.sqrt(2.0 * math.log(n + 1.0))


@dataclass(frozen=True)
class IMQ:
    """Inverse multiquadric :math:`k = (c^2 + \\|x - y\\|^2 / \\ell^2)^\\beta`, :math:`\\beta \\in (-1, 0)`.

    With :math:`\\beta = -1/2` its KSD detects non-convergence (Gorham & Mackey 2017).
    ``lengthscale=None`` uses the median pairwise distance.
    """

    c: float = 1.0
    beta: float = -0.5
    lengthscale: float | None = 1.0

    def __post_init__(self):
        if not -1.0 < self.beta < 0.0:
            raise ValueError(f"IMQ beta must lie in (-1, 0), got {self.beta}.")
        if self.c <= 0:
            raise ValueError(f"IMQ c must be positive, got {self.c}.")

    def profile(self, r):
        """:math:`f, f', f''` at :math:`r = \\|x-y\\|^2/\\ell^2`."""
        base = self.c**2 + r
        if self.beta == -0.5:  # rsqrt avoids the exp(beta * log(base)) of a general power
            f = jax.lax.rsqrt(base)
            inverse = f * f
        else:
            f = base**self.beta
            inverse = 1.0 / base
        f1 = self.beta * f * inverse
        f2 = (self.beta - 1.0) * f1 * inverse
        return f, f1, f2

    def resolve_lengthscale(self, x):
        if self.lengthscale is not None:
            return jnp.asarray(self.lengthscale, x.dtype)
        return median_lengthscale(x)


def squared_distances(a, b):
    """:math:`\\|a_i - b_j\\|^2` as one matrix product on coordinates centred at ``b``'s mean.

    Expanding :math:`\\|a\\|^2 + \\|b\\|^2 - 2 a^\\top b` on raw coordinates cancels
    catastrophically once the points sit far from 0 (in float32 at a location of 1000 the
    round-off exceeds a unit distance); centring first removes the location. Clipped at 0.
    """
    centre = jnp.mean(b, axis=0)
    a, b = a - centre, b - centre
    sq = jnp.sum(a * a, -1)[:, None] + jnp.sum(b * b, -1)[None, :] - 2.0 * a @ b.T
    return jnp.maximum(sq, 0.0)


@jax.jit
def median_lengthscale(x):
    """Median pairwise distance of (a strided subsample of at most 128 of) the rows of ``x``.

    The lower median of the :math:`m (m - 1) / 2` pairs :math:`i < j`, exact
    (:func:`kth_smallest`); 1 when the points coincide.
    """
    n = x.shape[0]
    sub = x[:: max(1, -(-n // MEDIAN_SUBSAMPLE))]
    m = sub.shape[0]
    if m < 2:
        return jnp.ones((), x.dtype)
    # each pair i < j appears twice in the matrix, after the m zeros of its diagonal
    half = (m * (m - 1) // 2 + 1) // 2
    med = jnp.sqrt(kth_smallest(squared_distances(sub, sub).ravel(), m + 2 * half))
    return jax.lax.stop_gradient(jnp.where(med > 0, med, 1.0))


def kth_smallest(values, k: int):
    """The ``k``-th smallest (1-based) of non-negative floats ``values``, exactly, without a sort.

    Non-negative IEEE floats order like their bit patterns read as integers, so bisection on
    those integers, keeping :math:`\\#\\{v \\le lo\\} < k \\le \\#\\{v \\le hi\\}`, ends with
    ``hi`` the bit pattern of the answer after at most 31 (float32) or 63 (float64) halvings
    of one comparison pass each. It is used instead of a sort (``jnp.median``) because XLA's
    CPU sort of the median heuristic's 8128 pairs costs several SVGD steps, and SVGD refreshes
    the median every ``svgd.BANDWIDTH_EVERY`` steps (timings in ``docs/benchmarks.md``).
    """
    int_dtype = jnp.int32 if values.dtype.itemsize == 4 else jnp.int64

    def halve(_, bounds):
        lo, hi = bounds
        mid = lo + (hi - lo) // 2
        enough = jnp.sum(values <= jax.lax.bitcast_convert_type(mid, values.dtype), dtype=int_dtype) >= k
        return jnp.where(enough, lo, mid), jnp.where(enough, mid, hi)

    start = (jnp.asarray(-1, int_dtype), jax.lax.bitcast_convert_type(jnp.max(jnp.abs(values)), int_dtype))
    _, hi = jax.lax.fori_loop(0, 8 * values.dtype.itemsize - 1, halve, start)
    return jax.lax.bitcast_convert_type(hi, values.dtype)
