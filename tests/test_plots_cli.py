"""Plots assert on their PlotCollections; the command line agrees with diagnose() in Python."""

import re

import numpy as np
import pytest
import xarray as xr

import numpyro_stein_diag as nsd
from numpyro_stein_diag.cli import main
from numpyro_stein_diag.demo import two_mode_model
from numpyro_stein_diag.plots import plot_ksd, plot_methods, plot_mode_mass

MODEL_FILE = '''
from numpyro_stein_diag.demo import two_mode_model as model
model_kwargs = {"weight_left": 0.3}
'''


def draws(rng, weight_left, shape):
    return np.where(rng.random(shape) < weight_left, -4.0, 4.0) + rng.normal(size=shape)


@pytest.fixture(scope="module")
def report():
    rng = np.random.default_rng(0)
    samples = {"exact": {"x": draws(rng, 0.3, (2, 300))}, "one_mode": {"x": rng.normal(4.0, 1.0, (1, 150))}}
    return nsd.diagnose(two_mode_model, weight_left=0.3, samples=samples, methods=(), progress_bar=False)


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


def test_ksd_plot_has_one_panel_per_quantity(report):
    pc = plot_ksd(report)
    points = pc.viz["points"]
    assert set(points.data_vars) == {"ksd", "ksd_pvalue", "perturbed_ksd", "perturbed_ksd_pvalue"}
    for method, test in report.ksd.items():
        assert offsets(points["ksd_pvalue"].sel({"method": method}).item())[0, 1] == pytest.approx(test.pvalue)
        perturbed = report.perturbed_ksd[method]
        assert offsets(points["perturbed_ksd_pvalue"].sel({"method": method}).item())[0, 1] == pytest.approx(perturbed.pvalue)


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
    for name, pc in loaded.plot(tmp_path).items():
        assert (tmp_path / f"{name}.png").stat().st_size > 5000
    assert plot_mode_mass(loaded).viz["observed"]["mass"].sizes == plot_mode_mass(report).viz["observed"]["mass"].sizes


def test_cli_check_gives_the_same_flags_as_python(report, tmp_path, capsys):
    (tmp_path / "models.py").write_text(MODEL_FILE)
    posterior = tmp_path / "one_mode.nc"
    tree = xr.DataTree.from_dict({"posterior": report.to_datatree("one_mode")["posterior"].dataset})
    tree.to_netcdf(posterior, engine="h5netcdf")
    code = main(["check", f"{tmp_path / 'models.py'}:model", "--samples", f"mine={posterior}", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 1  # flags raised
    python_flags = {(f.kind, f.mode) for f in report.flags if f.method == "one_mode"}
    loaded = nsd.Report.load(tmp_path / "out" / "report.nc")
    cli_flags = {(f.kind, f.mode) for f in loaded.flags}
    assert cli_flags == python_flags and "missed_mode" in out and loaded.methods == ["mine"]
    assert main(["show", str(tmp_path / "out" / "report.nc")]) == 1
    assert (tmp_path / "out" / "report_plots" / "mode_mass.png").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["check", "nowhere.py:model"], "model file nowhere.py does not exist"),
        (["check", "{models}:nope"], "has no function 'nope'"),
        (["check", "{models}"], "expected MODEL_FILE:FUNCTION"),
        (["check", "{models}:model", "--samples", "missing.nc"], "samples file missing.nc does not exist"),
        (["check", "{models}:model", "--methods", "hmc"], r"unknown method 'hmc'"),
        (["check", "{models}:model", "--methods", "svgd", "--set", "svgd.sigma=1"], r"'svgd' has no setting\(s\) \['sigma'\]"),
        (["check", "{models}:model", "--methods", "svgd", "--set", "nuts.num_chains=2"], "method 'nuts' is not run"),
        (["check", "{models}:model", "--set", "oops"], "expected METHOD.SETTING=VALUE"),
        (["check", "{models}:model", "--samples", "a/s.nc", "b/s.nc"], "two samples files are named 's'"),
        (["show", "missing.nc"], "report file missing.nc does not exist"),
    ],
)
def test_cli_bad_arguments(argv, message, tmp_path, capsys):
    (tmp_path / "models.py").write_text(MODEL_FILE)
    argv = [a.replace("{models}", str(tmp_path / "models.py")) for a in argv]
    assert main(argv) == 2
    assert re.search(message, capsys.readouterr().err)


def test_cli_samples_that_do_not_fit_the_model(tmp_path, capsys):
    (tmp_path / "models.py").write_text(MODEL_FILE)
    bad = tmp_path / "bad.nc"
    xr.DataTree.from_dict({"posterior": xr.Dataset({"y": (("chain", "draw"), np.zeros((1, 5)))})}).to_netcdf(bad, engine="h5netcdf")
    assert main(["check", f"{tmp_path / 'models.py'}:model", "--samples", str(bad)]) == 2
    assert "missing ['x']" in capsys.readouterr().err


def test_pictures_name_modes_by_location_and_keep_their_text_apart(report):
    pc = plot_mode_mass(report)
    titles = {int(m): pc.viz["title"]["mass"].sel(mode=m).item().get_text() for m in pc.viz["title"]["mass"]["mode"].values}
    assert titles == {k: report.modes.label(k) for k in range(len(report.modes))}
    assert all(t.startswith("x = ") for t in titles.values())
    # expected mass left of each method's position, observed share right of it
    for name, offset in (("expected_point", -0.15), ("observed", 0.15)):
        for j, method in enumerate(report.methods):
            artist = pc.viz[name]["mass"].sel({"method": method, "mode": 0}).item()
            assert artist.get_offsets()[0][0] == pytest.approx(j + offset)
    ksd = plot_ksd(report)
    labels = [t.get_text() for t in ksd.viz["plot"]["ksd"].item().get_xticklabels()]
    assert all("_" not in label for label in labels) and "\n" in "".join(labels)  # no rotated names
    methods = plot_methods(report)
    assert "point_estimate_text" not in methods.viz.children and "point_estimate" in methods.viz.children
