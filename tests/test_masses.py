"""The ModeMasses record: checked fields, and a check that refuses masses of other modes."""

import numpy as np
import pytest

import numpyro_stein_diag as nsd
from numpyro_stein_diag.masses import without_masses


def two_modes():
    return nsd.Modes(location=np.array([[-1.0], [1.0]]), log_density=np.zeros(2), hessian=np.ones((2, 1, 1)),
                     laplace_log_mass=np.log([0.5, 0.5]), values={"x": np.array([-1.0, 1.0])})


def test_the_mass_method_and_the_shapes_are_checked():
    with pytest.raises(ValueError, match=r"mass_method must be one of \('importance', 'laplace', 'none'\)"):
        nsd.ModeMasses(np.ones(2) / 2, np.zeros(2), 0.1, 0.0, mass_method="Laplace")
    with pytest.raises(ValueError, match=r"one length, got shapes \(2,\) and \(3,\)"):
        nsd.ModeMasses(np.ones(2) / 2, np.zeros(3), 0.1, 0.0, mass_method="importance")


def test_masses_not_estimated_are_nan_and_raise_no_flag():
    masses = without_masses(2)
    assert len(masses) == 2 and not masses.estimated and np.isnan(masses.mass).all()
    check = nsd.check_mode_mass("m", np.array([[0, 0, 0, 0]]), two_modes(), masses, independent=True)
    assert check.flags == ()


def test_the_check_refuses_masses_of_other_modes():
    three = nsd.ModeMasses(np.ones(3) / 3, np.full(3, 0.01), 0.1, 0.0, mass_method="importance")
    with pytest.raises(ValueError, match="masses holds 3 modes' masses for 2 modes"):
        nsd.check_mode_mass("m", np.array([[0, 1]]), two_modes(), three, independent=True)
