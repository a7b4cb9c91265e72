"""Auditing one method: the basins of its draws, its KSD tests and its mode-mass check, judged together."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .basins import assign_basins, reached_directly
from .check import ModeCheck, check_mode_mass, draws_ess
from .host import split_keys
from .ksd import KSDTest, ksd_test
from .masses import ModeMasses
from .modes import Modes
from .perturbed import perturbed_ksd_test
from .repair import Repair
from .runs import Run
from .target import Target

__all__ = ["MethodAudit", "audit"]

KSD_MAX_DRAWS = 1000  # draws per method the KSD tests use (thinned evenly within each chain)
KSD_BOOTSTRAP = 500


@dataclass(frozen=True, eq=False)
class MethodAudit:
    """Everything diagnose() found about one method: its ``run``, the ``basins`` of its draws
    (``(chain, draw)``, -1 for no known basin), its KSD ``tests`` (``"plain"``, and
    ``"perturbed"`` with two or more modes), the mode-mass ``check`` with the method's
    flags, and its ``repair`` (None when none could be made; the repair stage says why)."""

    run: Run
    basins: np.ndarray
    tests: dict[str, KSDTest]
    check: ModeCheck
    repair: Repair | None = None


def audit(
    target: Target,
    modes: Modes,
    masses: ModeMasses,
    run: Run,
    rng_key,
    canonicalize=None,
    smooth: bool = True,
    basins=None,
) -> MethodAudit:
    """One method's checks against ``modes`` and their ``masses``: basins (``basins`` when the mass
    estimate already assigned the draws, so none is assigned twice), the plain and perturbed
    KSD tests and the mode-mass check, judged together (Holm over the method's tests,
    :func:`~numpyro_stein_diag.check.judge`). A log density that is not ``smooth``
    (:func:`~numpyro_stein_diag.smoothness.find_jumps`) gets no KSD test: the score does not see
    its jumps, so the test's premise fails."""
    if basins is None:
        basins = assign_basins(target, modes, run.draws, canonicalize=canonicalize)
    chains_between_modes = len(modes) > 1 and not run.independent  # the only case that counts moves
    certain = reached_directly(target, modes, run.draws, basins, canonicalize) if chains_between_modes else None
    thinned = run.thinned(KSD_MAX_DRAWS)
    x = thinned.reshape(-1, target.dim) if run.independent else thinned
    k_plain, k_perturbed = split_keys(rng_key)
    tests = {"plain": ksd_test(target, x, k_plain, num_bootstrap=KSD_BOOTSTRAP)} if smooth else {}
    if smooth and len(modes) > 1:
        tests["perturbed"] = perturbed_ksd_test(target, x, k_perturbed, modes=modes, num_bootstrap=KSD_BOOTSTRAP)
    check = check_mode_mass(
        run.method,
        basins,
        modes,
        masses,
        independent=run.independent,
        tests=tests,
        draws_ess=None if run.independent else draws_ess(run.draws),
        certain=certain,
    )
    return MethodAudit(run, basins, tests, check)
