"""Find out whether posterior samples missed an isolated mode or got its weight wrong."""

from .basins import assign_basins
from .check import Flag, check_mode_mass
from .compilation import enable_compilation_cache
from .diagnose import diagnose, make_method
from .kernels import IMQ, RBF
from .ksd import KSDTest, ksd, ksd_test
from .masses import ModeMasses, mode_masses
from .modes import Degenerate, Modes, Runaway, find_modes
from .nuts import nuts
from .perturbed import perturbed_ksd_test
from .report import Report
from .runs import Run
from .stages import Stage
from .stein_variational import Schedule, SVGDKernel, annealed, chain, plain, svgd, tempered
from .target import Target

__all__ = [
    "IMQ",
    "RBF",
    "Degenerate",
    "Flag",
    "KSDTest",
    "ModeMasses",
    "Modes",
    "Report",
    "Run",
    "Runaway",
    "Schedule",
    "SVGDKernel",
    "Stage",
    "Target",
    "annealed",
    "assign_basins",
    "chain",
    "check_mode_mass",
    "diagnose",
    "enable_compilation_cache",
    "find_modes",
    "ksd",
    "ksd_test",
    "make_method",
    "mode_masses",
    "nuts",
    "perturbed_ksd_test",
    "plain",
    "svgd",
    "tempered",
]
__version__ = "0.1.0"
