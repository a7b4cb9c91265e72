"""The Report: its DataTree, what it says about mixing, its repaired posteriors, and a save / load round trip
that loses nothing."""

import numpy as np
import pytest
import xarray as xr

import numpyro_stein_diag as nsd


def test_mixing_is_reported_in_the_tree_summary_and_plot(equal_mass_report, tmp_path):
    diag = equal_mass_report.to_datatree("stuck_3_1")["stein_diagnostics"]
    assert diag["transitions"].dims == ("chain",) and int(diag["transitions"].sum()) == 0
    assert diag["basin_rhat"].dims == ("mode",) and diag.attrs["mixing"] == 0
    assert "0 transitions between modes, basin R-hat inf -> NOT mixing" in equal_mass_report.summary()
    from numpyro_stein_diag.plots import plot_mode_mass

    pc = plot_mode_mass(equal_mass_report)
    ax = pc.viz["plot"].sel(mode=0).item()
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert "rare_crossing\n5 moves" in labels[3] and labels[3].endswith("not mixing")


def test_repaired_round_trip_and_bad_method(equal_mass_report, tmp_path):
    equal_mass_report.save(tmp_path / "r.nc")
    loaded = nsd.Report.load(tmp_path / "r.nc")
    assert loaded == equal_mass_report
    for m in equal_mass_report.methods:
        xr.testing.assert_identical(loaded.repaired(m), equal_mass_report.repaired(m))
        assert loaded.checks[m].mixing == equal_mass_report.checks[m].mixing
        np.testing.assert_array_equal(loaded.checks[m].transitions, equal_mass_report.checks[m].transitions)
    with pytest.raises(KeyError, match=r"no method 'nuts' in this report; it has \['stuck_3_1'"):
        equal_mass_report.repaired("nuts")
