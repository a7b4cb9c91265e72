"""Run: what every sampling method returns, so diagnostics treat SVGD and NUTS alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

__all__ = ["Run"]


@dataclass(frozen=True, eq=False)
class Run:
    """Draws of one method, in both spaces.

    Attributes
    ----------
    method : str
        Name of the method (``"nuts"``, ``"svgd"``, ``"svgd_annealed"``, ... or a user's name).
    draws : array (chain, draw, d)
        Flat unconstrained draws. SVGD particles have ``chain = 1``, ``draw = particle``.
    samples : dict
        ``{site: (chain, draw, ...)}`` in the model's constrained space.
    history : dict
        Per-method trace of the run (SVGD: ``sigma``, ``beta``, ``step_norm`` per step and
        ``ksd`` at checkpoints); empty for samples the user brought.
    mcmc : numpyro.infer.MCMC or None
        The MCMC object of a NUTS run (for ``arviz_base.from_numpyro``).
    groups : dict
        ``{group: xarray.Dataset}`` the user brought in a DataTree (``posterior``,
        ``sample_stats``), kept with their dimension names and coordinates for the report.
    independent : bool
        True when draws are independent or interacting particles (no autocorrelation to
        correct for), False for Markov chains. Samples a user brings are chains unless declared
        with ``diagnose(..., independent={name})`` or ``posterior.attrs["independent"] = 1``.
    """

    method: str
    draws: jax.Array
    samples: dict[str, Any]
    history: dict[str, np.ndarray] = field(default_factory=dict)
    mcmc: Any = None
    groups: dict[str, Any] = field(default_factory=dict)
    independent: bool = False

    @property
    def particles(self) -> jax.Array:
        """All draws as ``(chain * draw, d)``."""
        return self.draws.reshape(-1, self.draws.shape[-1])

    @property
    def num_chains(self) -> int:
        return int(self.draws.shape[0])

    def thinned(self, max_draws: int) -> np.ndarray:
        """At most ``max_draws`` draws, evenly spaced within each chain: ``(chain, draw', d)``."""
        chains, n = self.draws.shape[:2]
        step = max(1, -(-chains * n // max_draws))
        return np.asarray(self.draws)[:, ::step]
