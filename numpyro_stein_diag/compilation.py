"""JAX's persistent compilation cache, as an opt-in setting.

Within one process every compiled program of the audit is reused (a Target built from the same
model and arguments is the same object, and sizes are padded to a few fixed chunks). A new
process compiles again, unless JAX's persistent compilation cache is on: then each compiled
program is written to a folder and loaded from there the next time the same program (the same
model, shapes and settings) is compiled. It is never turned on behind your back: it writes to
disk, and a cache directory is a choice for you (or your cluster's admin) to make.
"""

from __future__ import annotations

import os

import jax
from jax.experimental.compilation_cache import compilation_cache

__all__ = ["enable_compilation_cache"]


def enable_compilation_cache(path: str | os.PathLike) -> None:
    """Save compiled programs under ``path`` and load them from there in later processes.

    Sets ``jax_compilation_cache_dir`` and lowers JAX's thresholds (by default only programs
    that took over a second to compile are saved; most of the audit's take less, and together
    they are most of a first call). JAX decides whether to use the cache at its first
    compilation, so the cache's state is reset here: a call after MCMC has already compiled
    still applies. It applies to everything JAX compiles in this process from then on, this
    package's programs and your own. The folder grows with every new model and shape; delete it
    to start afresh. Anyone who can write to the folder can change what your process runs, so
    keep it yours.
    """
    path = os.path.expanduser(os.fspath(path))
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # -1: no size limit, no override
    compilation_cache.reset_cache()  # re-read the settings above at the next compilation
