"""The Report: its DataTree, its table (DataFrame, HTML, flags as variables), what it says about mixing, its
repaired posteriors, and a save / load round trip that loses nothing."""

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


def test_save_load_loses_nothing(two_mode_report, tmp_path):
    path = tmp_path / "report.nc"
    two_mode_report.save(path)
    loaded = nsd.Report.load(path)
    assert loaded == two_mode_report
    assert loaded.flags == two_mode_report.flags
    np.testing.assert_array_equal(loaded.masses.mass, two_mode_report.masses.mass)
    for m in two_mode_report.methods:
        xr.testing.assert_identical(loaded.to_datatree(m), two_mode_report.to_datatree(m))
        assert loaded.ksd[m] == two_mode_report.ksd[m]
        assert loaded.perturbed_ksd[m] == two_mode_report.perturbed_ksd[m]
    diag = loaded.to_datatree("one_mode")["stein_diagnostics"]
    assert int(diag["missed"].sum()) == 1
    assert float(diag["ksd_pvalue"].sel(test="plain")) == two_mode_report.ksd["one_mode"].pvalue
    assert loaded.stages == two_mode_report.stages and all(s.seconds >= 0 for s in loaded.stages)


def test_dataframe_html_and_flag_variables_hold_the_checks_numbers(two_mode_report):
    r = two_mode_report
    df = r.to_dataframe()
    assert list(df.index.names) == ["method", "mode"] and len(df) == 3 * len(r.modes)
    for m, check in r.checks.items():
        np.testing.assert_array_equal(df.loc[m, "expected_mass"].values, check.expected_mass)
        np.testing.assert_array_equal(df.loc[m, "observed_share"].values, check.observed_share)
        assert (df.loc[m, "ksd_pvalue"] == r.ksd[m].pvalue).all()
    left = int(np.argmin(r.modes.location[:, 0]))
    assert "missed_mode" in df.loc[("one_mode", left), "flags"] and df.loc["exact", "flags"].eq("").all()
    # flags are variables along a flag dim: xarray selects them
    flags = r.tree["flags"].to_dataset()
    missed = flags.where(flags["kind"] == "missed_mode", drop=True)
    assert list(missed["method"].values) == ["one_mode"] and int(missed["mode"].values[0]) == left
    assert flags.sizes["flag"] == len(r.flags)
    page = r._repr_html_()
    assert page.count("background:#fdd") == int((df["flags"] != "").sum()) and "<b>Flags:</b>" in page
