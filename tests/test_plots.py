"""Plots assert on their PlotCollections: the report's numbers, readable names, constant coordinates drawn
as lines, and a picture that fails leaving the others."""

import numpy as np
import pytest
import xarray as xr
from helpers import nsd_posterior

import numpyro_stein_diag as nsd
from numpyro_stein_diag import plots
from numpyro_stein_diag.cli import main
from numpyro_stein_diag.plots import constant_draws, plot_ksd, plot_methods, plot_mode_mass


def offsets(artist):
    return np.asarray(artist.get_offsets())


def test_mode_mass_plot_holds_the_reports_numbers(report):
    pc = plot_mode_mass(report)
    observed = pc.viz["observed"]["mass"]
    assert dict(observed.sizes) == {"method": 2, "mode": 2}  # one panel per mode, one point per method
    for method, check in report.checks.items():
        for mode in range(2):
            y = offsets(observed.sel({"method": method, "mode": mode}).item())[0, 1]
            assert y == pytest.approx(check.observed_share[mode])
            line = pc.viz["expected"]["mass"].sel({"method": method, "mode": mode}).item()
            low, high = line.get_ydata()
            assert (low + high) / 2 == pytest.approx(check.expected_mass[mode])
            assert high - low == pytest.approx(4 * check.expected_mass_se[mode], rel=1e-5)  # float32 masses
    crosses = sum(np.isfinite(offsets(pc.viz["flagged"]["mass"].sel(mode=m).item())[:, 1]).sum() for m in range(2))
    flagged_pairs = {(f.method, f.mode) for f in report.flags if f.mode >= 0}
    assert crosses == len(flagged_pairs) > 0
    # the marks are explained: a legend for bar, tick, dot and cross, and the mass axis labelled
    (legend,) = pc.get_viz("figure").legends
    assert [t.get_text() for t in legend.get_texts()] == [
        "expected mass ± 2 se (bar)",
        "expected mass (tick)",
        "observed share of the draws (dot)",
        "flagged: missed or misweighted (cross)",
    ]
    assert [pc.viz["plot"].sel(mode=m).item().get_ylabel() for m in range(2)] == ["probability mass of the mode", ""]


def test_ksd_plot_shows_each_tests_pvalue_against_the_level(report):
    pc = plot_ksd(report, alpha=0.05)
    points = pc.viz["points"]
    # KSD^2 is left out: the report keeps no bootstrap replicates to read it against
    assert set(points.data_vars) == {"ksd_pvalue", "perturbed_ksd_pvalue"}
    for method, test in report.ksd.items():
        assert offsets(points["ksd_pvalue"].sel({"method": method}).item())[0, 1] == pytest.approx(test.pvalue)
        perturbed = report.perturbed_ksd[method]
        assert offsets(points["perturbed_ksd_pvalue"].sel({"method": method}).item())[0, 1] == pytest.approx(
            perturbed.pvalue
        )
    for name in points.data_vars:
        assert pc.viz["alpha_line"][name].item().get_ydata()[0] == 0.05
        assert pc.viz["alpha_text"][name].item().get_text() == "α = 0.05"


def test_methods_plot_keeps_every_methods_interval_with_unequal_sizes(report):
    pc = plot_methods(report)
    intervals = pc.viz["credible_interval"]["x"]
    assert intervals.sizes["model"] == 2
    for model in intervals["model"].values:
        xs = intervals.sel(model=model).item().get_xdata()
        assert np.all(np.isfinite(xs)) and xs[1] > xs[0]


def test_plots_render_headless_and_after_a_round_trip(report, tmp_path):
    report.save(tmp_path / "r.nc")
    loaded = nsd.Report.load(tmp_path / "r.nc")
    for name in loaded.plot(tmp_path):
        assert (tmp_path / f"{name}.png").stat().st_size > 5000
    assert plot_mode_mass(loaded).viz["observed"]["mass"].sizes == plot_mode_mass(report).viz["observed"]["mass"].sizes


def test_pictures_name_modes_by_location_and_keep_their_text_apart(report):
    pc = plot_mode_mass(report)
    titles = {
        int(m): pc.viz["title"]["mass"].sel(mode=m).item().get_text() for m in pc.viz["title"]["mass"]["mode"].values
    }
    assert titles == {k: report.modes.label(k) for k in range(len(report.modes))}
    assert all(t.startswith("x = ") for t in titles.values())
    # expected mass left of each method's position, observed share right of it
    for name, offset in (("expected_point", -0.15), ("observed", 0.15)):
        for j, method in enumerate(report.methods):
            artist = pc.viz[name]["mass"].sel({"method": method, "mode": 0}).item()
            assert artist.get_offsets()[0][0] == pytest.approx(j + offset)
    ksd = plot_ksd(report)
    labels = [t.get_text() for t in ksd.viz["plot"]["ksd_pvalue"].item().get_xticklabels()]
    assert all("_" not in label for label in labels) and "\n" in "".join(labels)  # no rotated names
    methods = plot_methods(report)
    assert "point_estimate_text" not in methods.viz.children and "point_estimate" in methods.viz.children


def vertical_lines(ax) -> list[tuple[float, str, str]]:
    """``(x, colour, linestyle)`` of the full-height vertical lines on a panel (axvline: y from 0 to 1
    of the axes)."""
    return [
        (float(line.get_xdata()[0]), line.get_color(), line.get_linestyle())
        for line in ax.get_lines()
        if list(line.get_ydata()) == [0, 1]
    ]


def test_constant_draws_are_float_rounding_relative_to_their_size():
    eps32 = float(np.finfo(np.float32).eps)
    rng = np.random.default_rng(0)
    shape = (2, 50)

    def spread_of(steps, base=1.0):  # float32 draws base + k eps for k = 0 .. steps, both ends hit
        k = rng.integers(0, steps + 1, shape)
        k[0, :2] = 0, steps
        return (base + k * eps32 * base).astype(np.float32)

    posterior = xr.Dataset(
        {
            name: (("chain", "draw"), values)
            for name, values in {
                "lkj_diagonal": spread_of(4),  # 1 +- a few float32 steps, as LKJ's diagonal
                "under_grid": spread_of(511),  # numpy cannot cut 511 steps into the KDE's 512 bins
                "at_threshold": spread_of(1024),
                "over_threshold": spread_of(1100),
                "fixed_zero": np.zeros(shape, np.float32),
                "tiny_but_spread": 1e-9 * rng.normal(size=shape),  # small, but spread like its size
                "narrow_float64": 1000.0 + 1e-3 * rng.normal(size=shape),  # 1e-6 relative: ~10^10 float64 steps
                "narrow_float32": (1000.0 + 1e-3 * rng.normal(size=shape)).astype(np.float32),  # ~10 float32 steps
                "same_count": np.full(shape, 3),
                "counts": rng.integers(0, 3, shape),
            }.items()
        }
    )
    constant = constant_draws(posterior)
    assert {name: bool(v) for name, v in constant.items()} == {
        "lkj_diagonal": True,
        "under_grid": True,
        "at_threshold": True,
        "over_threshold": False,
        "fixed_zero": True,
        "tiny_but_spread": False,
        "narrow_float64": False,
        "narrow_float32": True,
        "same_count": True,
        "counts": False,
    }
    with pytest.raises(ValueError, match="Too many bins"):  # why: the KDE's grid needs 512 float steps
        np.histogram(posterior["under_grid"].values, bins=512, range=(1.0, 1.0 + 511 * eps32))


def test_constant_coordinates_are_lines_and_titled_not_empty_densities():
    rng = np.random.default_rng(1)
    eps32 = float(np.finfo(np.float32).eps)
    near_one = (1.0 + eps32 * rng.integers(0, 3, (2, 100))).astype(np.float32)
    v = np.stack([np.zeros((2, 100)), rng.normal(size=(2, 100))], axis=-1)  # v[0] fixed at 0, v[1] free

    def tree(**sites):
        return xr.DataTree.from_dict({"posterior": nsd_posterior(sites), "stein_diagnostics": xr.Dataset()})

    trees = {"a": tree(d=near_one, v=v), "b": tree(d=rng.normal(1.0, 0.1, (2, 100)).astype(np.float32), v=v)}
    pc = plot_methods(trees)
    titles = {
        key: pc.viz["title"][var].sel(sel).item().get_text()
        for key, var, sel in (("d", "d", {}), ("v0", "v", {"v_dim_0": 0}), ("v1", "v", {"v_dim_0": 1}))
    }
    # constant in every method: said in the title; in one method only: that method's line says it
    assert titles == {"d": "d", "v0": "v[0] = 0 (constant)", "v1": "v[1]"}
    colours = dict(zip(pc.aes["color"]["mapping"]["model"].values, pc.aes["color"]["mapping"].values))
    [(x, colour, style)] = vertical_lines(pc.viz["plot"]["d"].item())  # a's line; b's density
    assert x == pytest.approx(1.0, abs=2 * eps32) and colour == colours["a"] and style == "-"
    assert vertical_lines(pc.viz["plot"]["v"].sel(v_dim_0=0).item()) == [(0.0, colours[m], "-") for m in "ab"]
    assert vertical_lines(pc.viz["plot"]["v"].sel(v_dim_0=1).item()) == []
    density = pc.viz["dist"]["d"].sel(model="b").item().get_ydata()
    assert np.isfinite(density).all() and density.max() > 0


def test_a_picture_that_fails_leaves_the_others_and_says_why(report, tmp_path, monkeypatch, capsys):
    def no_ink(dt):
        raise RuntimeError("no ink")

    monkeypatch.setattr(plots, "plot_ksd", no_ink)
    made = report.plot(tmp_path)
    assert set(made) == {"mode_mass", "methods"} and report.plot_failures == {"ksd": "RuntimeError: no ink"}
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["methods.png", "mode_mass.png"]
    report.save(tmp_path / "r.nc")
    assert main(["show", str(tmp_path / "r.nc"), "--out", str(tmp_path / "shown")]) == 1  # by the flags, not 2
    assert "numpyro-stein-diag show: could not draw ksd.png: RuntimeError: no ink" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "shown").glob("*.png")) == ["methods.png", "mode_mass.png"]
