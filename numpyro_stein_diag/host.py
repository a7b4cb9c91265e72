"""Host-side (NumPy) helpers for the compiled paths: fixed sizes and random numbers without compiling.

Every distinct shape a jitted function sees is one more XLA compilation, and every JAX op run
outside jit is compiled on its first use. The audit's glue therefore runs in NumPy: inputs are
padded to a few fixed sizes before they reach compiled code (:func:`map_chunks`), and random
numbers that only feed NumPy work come from a NumPy generator seeded by the JAX key
(:func:`numpy_rng`), so a run is still fixed by its ``rng_key``.
"""

from __future__ import annotations

import jax
import numpy as np

__all__ = ["map_chunks", "numpy_rng", "split_keys", "systematic_resample"]


def numpy_rng(rng_key) -> np.random.Generator:
    """A NumPy generator determined by the JAX key ``rng_key`` (its raw key data is the seed)."""
    return np.random.default_rng(np.asarray(jax.random.key_data(rng_key)).ravel().astype(np.uint32))


def map_chunks(fn, x, chunk: int):
    """``fn`` applied to ``x (n, ...)`` ``chunk`` rows at a time, the last chunk padded with copies
    of the first row, and its outputs (an array or a tuple of them) joined and cut back to ``n``
    rows, as NumPy: a compiled ``fn`` sees one shape for every ``n``. ``x`` may be a tuple of
    arrays with the same ``n`` rows: ``fn`` then takes one chunk of each."""
    arrays = [np.asarray(a) for a in (x if isinstance(x, tuple) else (x,))]
    n = arrays[0].shape[0]
    padded = [np.concatenate([a, np.repeat(a[:1], -n % chunk, axis=0)]) for a in arrays]
    parts = [fn(*(a[i : i + chunk] for a in padded)) for i in range(0, len(padded[0]), chunk)]
    return jax.tree.map(lambda *outputs: np.concatenate([np.asarray(o) for o in outputs])[:n], *parts)


def split_keys(rng_key, num: int = 2) -> list:
    """``jax.random.split(rng_key, num)`` as a list of keys taken apart on the host: unpacking
    or iterating a JAX array of keys compiles an ``unstack`` for every ``num`` on top of the
    split itself."""
    keys = jax.random.split(rng_key, num)
    if jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key):  # new-style typed keys
        impl = jax.random.key_impl(keys)
        return [jax.random.wrap_key_data(data, impl=impl) for data in np.asarray(jax.random.key_data(keys))]
    return list(np.asarray(keys))


def systematic_resample(rng_key, weights, num: int) -> np.ndarray:
    """Indices of ``num`` draws resampled systematically in proportion to ``weights``: one
    uniform :math:`u`, positions :math:`(u + i) / n` on the cumulative normalised weights
    (each draw is picked :math:`\\lfloor n w_j \\rfloor` or :math:`\\lceil n w_j \\rceil` times)."""
    weights = np.asarray(weights, dtype=float)
    positions = (numpy_rng(rng_key).random() + np.arange(num)) / num
    return np.minimum(np.searchsorted(np.cumsum(weights) / np.sum(weights), positions), len(weights) - 1)
