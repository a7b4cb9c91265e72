"""Find out whether posterior samples missed an isolated mode or got its weight wrong."""

from .kernels import IMQ, RBF
from .ksd import KSDTest, ksd, ksd_test
from .target import Target

__all__ = ["IMQ", "RBF", "KSDTest", "Target", "ksd", "ksd_test"]
__version__ = "0.1.0"
