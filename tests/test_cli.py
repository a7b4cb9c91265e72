"""The command line: it agrees with diagnose() in Python, writes what ArviZ opens, exits by the verdict,
and names every bad argument."""

import re

import numpy as np
import pytest
import xarray as xr
from helpers import nsd_posterior

import numpyro_stein_diag as nsd
from numpyro_stein_diag.cli import EXIT_INCOMPLETE, EXIT_OK, main
from numpyro_stein_diag.plots import plot_methods


def write_model_file(tmp_path, weight_left):
    """A user's model file, ``models.py:model``: the two-mode model with ``weight_left``."""
    (tmp_path / "models.py").write_text(
        f'from helpers import two_mode_model as model\nmodel_kwargs = {{"weight_left": {weight_left}}}\n'
    )


def test_cli_check_gives_the_same_flags_as_python(report, tmp_path, capsys):
    write_model_file(tmp_path, 0.3)
    posterior = tmp_path / "one_mode.nc"
    tree = xr.DataTree.from_dict({"posterior": report.to_datatree("one_mode")["posterior"].dataset})
    tree.to_netcdf(posterior, engine="h5netcdf")
    code = main(
        ["check", f"{tmp_path / 'models.py'}:model", "--samples", f"mine={posterior}", "--out", str(tmp_path / "out")]
    )
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
        (
            ["check", "{models}:model", "--methods", "svgd", "--set", "svgd.sigma=1"],
            r"'svgd' has no setting\(s\) \['sigma'\]",
        ),
        (["check", "{models}:model", "--methods", "svgd", "--set", "nuts.num_chains=2"], "method 'nuts' is not run"),
        (["check", "{models}:model", "--set", "oops"], "expected METHOD.SETTING=VALUE"),
        (["check", "{models}:model", "--samples", "a/s.nc", "b/s.nc"], "two samples files are named 's'"),
        (["show", "missing.nc"], "report file missing.nc does not exist"),
    ],
)
def test_cli_bad_arguments(argv, message, tmp_path, capsys):
    write_model_file(tmp_path, 0.3)
    argv = [a.replace("{models}", str(tmp_path / "models.py")) for a in argv]
    assert main(argv) == 2
    assert re.search(message, capsys.readouterr().err)


def test_cli_samples_that_do_not_fit_the_model(tmp_path, capsys):
    write_model_file(tmp_path, 0.3)
    bad = tmp_path / "bad.nc"
    xr.DataTree.from_dict({"posterior": xr.Dataset({"y": (("chain", "draw"), np.zeros((1, 5)))})}).to_netcdf(
        bad, engine="h5netcdf"
    )
    assert main(["check", f"{tmp_path / 'models.py'}:model", "--samples", str(bad)]) == 2
    assert "missing ['x']" in capsys.readouterr().err


LKJ_FILE = """
import numpyro
import numpyro.distributions as dist


def model():
    numpyro.sample("L", dist.LKJCholesky(3, concentration=2.0))
    numpyro.sample("corr", dist.LKJ(3, concentration=2.0))
"""


@pytest.mark.slow
def test_lkj_sites_plot_and_the_cli_exits_by_the_verdict(tmp_path, capsys):
    """LKJ's diagonal is 1 +- 1e-7 in float32 (the KDE raised on it) and LKJCholesky's first row and
    L[1, 2] are fixed; exact prior draws of a model without data are exact posterior draws."""
    import jax
    import numpyro.distributions as dist

    key_l, key_c = jax.random.split(jax.random.PRNGKey(0))
    draws = {
        "L": np.asarray(dist.LKJCholesky(3, 2.0).sample(key_l, (2, 200))),
        "corr": np.asarray(dist.LKJ(3, 2.0).sample(key_c, (2, 200))),
    }
    assert np.ptp(np.diagonal(draws["corr"], axis1=-2, axis2=-1)) > 0  # near-constant, not constant
    (tmp_path / "lkj.py").write_text(LKJ_FILE)
    samples = tmp_path / "exact.nc"
    xr.DataTree.from_dict({"posterior": nsd_posterior(draws)}).to_netcdf(samples, engine="h5netcdf")
    out, repaired = tmp_path / "out", tmp_path / "repaired"
    code = main(
        [
            "check",
            f"{tmp_path / 'lkj.py'}:model",
            "--samples",
            f"exact={samples}",
            "--out",
            str(out),
            "--repaired",
            str(repaired),
            "--independent",
            "exact",
        ]
    )
    assert "could not draw" not in capsys.readouterr().err
    loaded = nsd.Report.load(out / "report.nc")
    assert loaded.ok  # exact draws: no flag
    assert loaded.diagnostics("exact").attrs["independent"] == 1  # declared on the command line
    assert code == (EXIT_OK if loaded.complete else EXIT_INCOMPLETE)
    assert (repaired / "exact.nc").exists()
    for name in ("mode_mass", "ksd", "methods"):
        assert (out / f"{name}.png").stat().st_size > 5000
    pc = plot_methods(loaded)
    titles = [
        pc.viz["title"][var].sel({f"{var}_dim_0": i, f"{var}_dim_1": j}).item().get_text()
        for var in ("L", "corr")
        for i in range(3)
        for j in range(3)
    ]
    assert [t for t in titles if t.endswith("(constant)")] == [
        "L[0, 0] = 1 (constant)",
        "L[0, 1] = 0 (constant)",
        "L[0, 2] = 0 (constant)",
        "L[1, 2] = 0 (constant)",
        "corr[0, 0] = 1 (constant)",
        "corr[1, 1] = 1 (constant)",
        "corr[2, 2] = 1 (constant)",
    ]
    assert not any("\n" in t for t in titles)  # one line each: no title runs into the tick labels above


def test_cli_writes_repaired_posteriors_arviz_opens(equal_mass_report, tmp_path):
    write_model_file(tmp_path, 0.5)
    posterior = tmp_path / "stuck.nc"
    xr.DataTree.from_dict({"posterior": equal_mass_report.to_datatree("stuck_3_1")["posterior"].dataset}).to_netcdf(
        posterior, engine="h5netcdf"
    )
    code = main(
        ["check", f"{tmp_path / 'models.py'}:model", "--samples", str(posterior), "--repaired", str(tmp_path / "fixed")]
    )
    assert code == 1
    import arviz_base

    tree = arviz_base.convert_to_datatree(str(tmp_path / "fixed" / "stuck.nc"))  # ArviZ reads the file as it is
    x = tree["posterior"]["x"]
    assert x.dims == ("chain", "draw") and x.shape == (4, 500)
    # basin counts are exact by construction; x < 0 stands for the left basin, and a draw near the
    # saddle at 0 may ascend to the other side: 2 of 2000 draws allowed for that (measured: 1)
    left = int(np.argmin(equal_mass_report.modes.location[:, 0]))
    assert abs(float((x < 0).mean()) - float(tree["repair"]["mass"].sel(mode=left))) <= 2 / 2000
