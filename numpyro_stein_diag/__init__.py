"""Find out whether posterior samples missed an isolated mode or got its weight wrong."""

from .kernels import IMQ, RBF
from .ksd import KSDTest, ksd, ksd_test
from .nuts import nuts
from .runs import Run
from .svgd import Schedule, annealed, chain, plain, svgd, tempered
from .target import Target

__all__ = [
    "IMQ", "RBF", "KSDTest", "Run", "Schedule", "Target",
    "annealed", "chain", "ksd", "ksd_test", "nuts", "plain", "svgd", "tempered",
]
__version__ = "0.1.0"
