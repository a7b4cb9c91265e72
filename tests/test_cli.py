"""The command line: it agrees with diagnose() in Python, writes what ArviZ opens, exits by the verdict,
and names every bad argument."""

import numpy as np
import xarray as xr

from numpyro_stein_diag.cli import main


MODEL_FILE = '''
from helpers import two_mode_model as model
model_kwargs = {"weight_left": 0.5}
'''


def test_cli_writes_repaired_posteriors_arviz_opens(equal_mass_report, tmp_path):
    (tmp_path / "models.py").write_text(MODEL_FILE)
    posterior = tmp_path / "stuck.nc"
    xr.DataTree.from_dict({"posterior": equal_mass_report.to_datatree("stuck_3_1")["posterior"].dataset}).to_netcdf(
        posterior, engine="h5netcdf")
    code = main(["check", f"{tmp_path / 'models.py'}:model", "--samples", str(posterior),
                 "--repaired", str(tmp_path / "fixed")])
    assert code == 1
    import arviz_base

    tree = arviz_base.convert_to_datatree(str(tmp_path / "fixed" / "stuck.nc"))  # ArviZ reads the file as it is
    x = tree["posterior"]["x"]
    assert x.dims == ("chain", "draw") and x.shape == (4, 500)
    # basin counts are exact by construction; x < 0 stands for the left basin, and a draw near the
    # saddle at 0 may ascend to the other side: 2 of 2000 draws allowed for that (measured: 1)
    left = int(np.argmin(equal_mass_report.modes.location[:, 0]))
    assert abs(float((x < 0).mean()) - float(tree["repair"]["mass"].sel(mode=left))) <= 2 / 2000
