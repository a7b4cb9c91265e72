"""Repaired posteriors: a method's draws with each basin holding its mode's mass, checked against exact
mixtures; a correct sample comes back unchanged up to resampling noise; a repair that cannot be made
(or would rest on unreliable weights) is refused with the reason; a basin is filled from the proposal
fitted to its draws, which rests on more effective draws than the mode's own Student-t.

The two-mode target is ``w N(-4, 1) + (1 - w) N(4, 1)``: its basins split at the density minimum, and
beyond +-4 sd the tails add < 1e-4, so the basin masses are ``w`` and ``1 - w``.
"""

import re
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from helpers import MODE_FLAGS, ar1, mixture_draws, mode_kinds, t_mixture, two_mode_model

import numpyro_stein_diag as nsd
from numpyro_stein_diag.masses import BasinPool, modes_proposal
from numpyro_stein_diag.repair import basin_counts, repair, restricted_draws


def mixture_moments(weights, locs, scales):
    """Mean and standard deviation per coordinate of a Gaussian mixture with diagonal covariances."""
    weights, locs, scales = map(np.asarray, (weights, locs, scales))
    mean = weights @ locs
    second = weights @ (locs**2 + scales**2)
    return mean, np.sqrt(second - mean**2)


def moment_tolerances(weights, locs, scales, n, mass_se):
    """4 x (Monte Carlo standard error of the mean and sd from n draws, plus the error that a
    mass off by its se moves them): a false failure about 1 in 15,000 per coordinate."""
    weights, locs, scales = map(np.asarray, (weights, locs, scales))
    mean, sd = mixture_moments(weights, locs, scales)
    fourth = weights @ (((locs - mean) ** 4) + 6 * (locs - mean) ** 2 * scales**2 + 3 * scales**4)
    mcse_mean = sd / np.sqrt(n)
    mcse_sd = np.sqrt((fourth - sd**4) / n) / (2 * sd)
    spread = np.abs(locs - mean).max(axis=0)  # moving se of mass between modes shifts the mean by at most this
    mass_mean = spread * np.max(mass_se)
    mass_sd = spread**2 * np.max(mass_se) / sd
    return 4 * np.hypot(mcse_mean, mass_mean), 4 * np.hypot(mcse_sd, mass_sd)


@pytest.fixture(scope="module")
def missed_heavy_mode_report():
    """0.1 N(-4, 1) + 0.9 N(4, 1); four chains stuck in the 0.1 mode miss 90% of the mass."""
    rng = np.random.default_rng(1)
    samples = {"stuck_light": {"x": ar1(rng, -4.0, (4, 500))}}
    return nsd.diagnose(two_mode_model, weight_left=0.1, samples=samples, methods=(), progress_bar=False)


def test_repaired_draws_fill_a_missed_mode_of_mass_09(missed_heavy_mode_report):
    r = missed_heavy_mode_report
    assert mode_kinds(r, "stuck_light") == MODE_FLAGS
    repaired = r.repaired("stuck_light")
    x = repaired["posterior"]["x"]
    assert x.dims == ("chain", "draw") and x.shape == (4, 500)
    target = nsd.Target.from_model(two_mode_model, weight_left=0.1)
    basins = np.asarray(nsd.assign_basins(target, r.modes, x.values[..., None]))
    right = int(np.argmax(r.modes.location[:, 0]))
    # basin shares equal the masses up to rounding to whole draws (1 / 2000)
    assert abs(np.mean(basins == right) - r.masses.mass[right]) <= 1 / 2000
    assert abs(np.mean(basins == right) - 0.9) < max(0.03, 3 * r.masses.mass_se[right])
    repair = repaired["repair"]
    counts = repair["draws_kept"] + repair["draws_filled"]
    assert int(counts[right]) == round(2000 * float(r.masses.mass[right])) and int(counts.sum()) == 2000
    # the chains' own draws in the heavy mode's basin (a few from the light mode's tail) are all kept
    assert int(repair["draws_kept"][right]) == round(2000 * float(repair["share_before"][right]))
    assert float(repair["fill_pareto_k"][right]) < 0.7 and float(repair["fill_ess"][right]) > 1000
    assert float(repair["share_before"][right]) < 0.01
    # moments against the exact mixture; 1000 effective draws is conservative (ESS of 2000 AR(1)
    # draws with rho = 0.5 is ~670 for the kept 10%, the fill-in's weight ESS is above 1000)
    mean, sd = mixture_moments([0.1, 0.9], [[-4.0], [4.0]], [[1.0], [1.0]])
    tol_mean, tol_sd = moment_tolerances([0.1, 0.9], [[-4.0], [4.0]], [[1.0], [1.0]], 1000, r.masses.mass_se)
    assert abs(float(x.mean()) - mean[0]) < tol_mean[0]
    assert abs(float(x.std()) - sd[0]) < tol_sd[0]


def test_a_repaired_posterior_fed_back_raises_no_mode_flag(missed_heavy_mode_report, equal_mass_report):
    samples = {"repaired": missed_heavy_mode_report.repaired("stuck_light")}
    again = nsd.diagnose(two_mode_model, weight_left=0.1, samples=samples, methods=(), progress_bar=False)
    assert mode_kinds(again, "repaired") == set() and again.checks["repaired"].mixing
    samples = {name: equal_mass_report.repaired(name) for name in ("stuck_3_1", "all_in_one")}
    again = nsd.diagnose(two_mode_model, weight_left=0.5, samples=samples, methods=(), progress_bar=False)
    assert all(mode_kinds(again, name) == set() for name in samples)


@pytest.mark.slow
def test_repaired_three_skewed_modes_in_5d():
    weights = np.array([0.6, 0.3, 0.1])
    locs = np.zeros((3, 5))
    locs[0, 0], locs[1, 1], locs[2, 0] = -6.0, 6.0, 6.0
    scales = np.array([1.0, 0.7, 1.5])

    def model():
        components = dist.Normal(jnp.asarray(locs), jnp.asarray(scales)[:, None]).to_event(1)
        numpyro.sample("x", dist.MixtureSameFamily(dist.Categorical(jnp.asarray(weights)), components))

    rng = np.random.default_rng(2)
    # chains stuck with the weights upside down: two in the 0.1 mode, one in each other
    chains = [2, 2, 1, 0]
    x = np.stack([locs[c] + scales[c] * np.moveaxis(ar1(rng, 0.0, (5, 500)), 0, -1) for c in chains])
    report = nsd.diagnose(model, samples={"upside_down": {"x": x}}, methods=(), progress_bar=False)
    assert len(report.modes) == 3 and mode_kinds(report, "upside_down")
    order = [int(np.argmin(np.linalg.norm(report.modes.location - m, axis=1))) for m in locs]
    assert np.all(np.abs(report.masses.mass[order] - weights) < np.maximum(0.03, 3 * report.masses.mass_se[order]))
    repaired = report.repaired("upside_down")["posterior"]["x"].values.reshape(-1, 5)
    target = nsd.Target.from_model(model)
    basins = np.asarray(nsd.assign_basins(target, report.modes, repaired))
    shares = np.array([np.mean(basins == k) for k in order])
    assert np.all(np.abs(shares - weights) < np.maximum(0.03, 3 * report.masses.mass_se[order]))
    mean, sd = mixture_moments(weights, locs, np.broadcast_to(scales[:, None], (3, 5)))
    # 500 effective draws: 2000 AR(1) draws with rho = 0.5 have ESS ~670; fill-in adds more
    tol_mean, tol_sd = moment_tolerances(
        weights, locs, np.broadcast_to(scales[:, None], (3, 5)), 500, report.masses.mass_se
    )
    assert np.all(np.abs(repaired.mean(axis=0) - mean) < tol_mean)
    assert np.all(np.abs(repaired.std(axis=0) - sd) < tol_sd)


def test_a_correct_unimodal_sample_comes_back_unchanged():
    def model():
        numpyro.sample("theta", dist.Normal(jnp.array([1.0, -2.0]), jnp.array([0.5, 3.0])).to_event(1))

    x = np.random.default_rng(3).normal([1.0, -2.0], [0.5, 3.0], (4, 300, 2))
    report = nsd.diagnose(model, samples={"exact": {"theta": x}}, methods=(), progress_bar=False)
    repaired = report.repaired("exact")
    theta = repaired["posterior"]["theta"].values.reshape(-1, 2)
    assert int(repaired["repair"]["draws_filled"].sum()) == 0
    # one mode holding every draw: the same draws, only shuffled
    np.testing.assert_allclose(np.sort(theta, axis=0), np.sort(x.reshape(-1, 2), axis=0), rtol=1e-6)


def test_a_correct_two_mode_sample_changes_only_by_resampling_noise(equal_mass_report):
    rng = np.random.default_rng(4)
    exact = mixture_draws(rng, 0.5, (4, 500))
    report = nsd.diagnose(
        two_mode_model, weight_left=0.5, samples={"exact": {"x": exact}}, methods=(), progress_bar=False
    )
    repaired = report.repaired("exact")
    x = repaired["posterior"]["x"].values
    # moving draws between basins only to round the shares onto the masses: the count moved is
    # |share - mass| * n, here within 3 se of the masses (se ~0.009) and the share's own noise
    moved = np.abs(repaired["repair"]["share_before"] - repaired["repair"]["mass"]).max()
    assert float(moved) < 0.05
    _, tol_sd = moment_tolerances([0.5, 0.5], [[-4.0], [4.0]], [[1.0], [1.0]], 2000, report.masses.mass_se)
    # the mean moves by 8 (the modes' distance) per unit of share moved, plus the noise of
    # swapping that many unit-variance draws: 4 sd of it is 4 sqrt(2 m) / n for m = moved * n
    n = exact.size
    assert abs(x.mean() - exact.mean()) < 8 * float(moved) + 4 * np.sqrt(2 * float(moved) * n) / n
    assert abs(x.std() - exact.std()) < tol_sd[0]


def test_basin_counts_round_to_the_total():
    counts, none = basin_counts([0.5, 0.3, 0.2], 0.01, 5, 101)
    assert counts.sum() + none == 101 and none == 1
    assert counts.tolist() == [50, 30, 20]
    counts, none = basin_counts([1 / 3, 1 / 3, 1 / 3], 0.2, 3, 10)
    assert none == 2 and counts.sum() == 8 and sorted(counts.tolist()) == [2, 3, 3]
    with pytest.raises(ValueError, match="not finite"):
        basin_counts([np.nan, 0.5], 0.0, 0, 10)


def test_a_repair_that_cannot_be_made_leaves_the_audit_and_says_why(monkeypatch, tmp_path):
    import importlib

    diagnose_module = importlib.import_module("numpyro_stein_diag.diagnose")  # the module, not the function

    def fails(*args, **kwargs):
        raise ValueError("no proposal draw ascends into the basin")

    monkeypatch.setattr(diagnose_module, "repair", fails)
    x = ar1(np.random.default_rng(5), 4.0, (2, 200))
    report = nsd.diagnose(two_mode_model, samples={"one": {"x": x}}, methods=(), progress_bar=False)
    assert "missed_mode" in mode_kinds(report, "one")  # the check stands
    report.save(tmp_path / "r.nc")
    for r in (report, nsd.Report.load(tmp_path / "r.nc")):
        with pytest.raises(ValueError, match="no repaired draws for 'one': no proposal draw ascends"):
            r.repaired("one")


def test_a_fill_in_on_unreliable_weights_is_refused_and_the_draws_stand():
    # 0.5 t_0.3(-20) + 0.5 N(20, 1), draws of the right mode only: the left basin must be filled
    # from the t_5 proposal, whose weights against a t_0.3 tail have Pareto k = 0.94 (estimates of
    # it from a few thousand draws range over 0.86-1.19); a repair built on them would be a few
    # repeated points, so none is made
    def potential(z):
        return -jnp.logaddexp(
            jnp.log(0.5) + dist.StudentT(0.3, -20.0, 1.0).log_prob(z), jnp.log(0.5) + dist.Normal(20.0, 1.0).log_prob(z)
        ).sum()

    t = nsd.Target.from_potential(potential, jnp.zeros(1), init_scale=20.0)
    modes = nsd.find_modes(t, jnp.array([[-20.0], [20.0]]))
    masses = nsd.mode_masses(t, modes, jax.random.PRNGKey(0))
    draws = np.random.default_rng(0).normal(20.0, 1.0, (2, 500, 1))
    with pytest.raises(ValueError, match=r"no repair: \d+ draws for mode \d .* draws are kept") as err:
        repair(t, modes, masses, draws, nsd.assign_basins(t, modes, draws), jax.random.PRNGKey(0))
    assert float(re.search(r"Pareto k = (\d\.\d\d)", str(err.value)).group(1)) > 0.7


def test_a_basin_is_filled_from_the_proposal_fitted_to_its_draws():
    # 0.3 N(-15 e1, I) + 0.7 t_5(15 e1, I) at d = 20, a sample with half its draws in each mode: the t
    # basin is filled from the bridge's proposal draws (fitted to the basin's draws), whose weights
    # rest on about twice the effective draws of the mode's own Student-t (measured 1882 against 881;
    # at d = 50, 1901 against 178)
    (target, modes), draws, _ = t_mixture(20)
    x = draws(0, 8000)
    sample = np.concatenate([x[x[:, 0] > 0][:1000], x[x[:, 0] < 0][:1000]]).reshape(4, 500, 20)
    masses = nsd.mode_masses(target, modes, jax.random.PRNGKey(0), draws=sample)
    t_mode = int(np.argmax(modes.location[:, 0]))
    mode_t = BasinPool.empty(modes_proposal(modes, np.eye(2)[t_mode]))
    fitted, from_mode = (
        restricted_draws(target, modes, t_mode, pool, jax.random.PRNGKey(1), 400)
        for pool in (masses.pools[t_mode], mode_t)
    )
    assert fitted[1] < 0.7 and fitted[2] > 1.5 * from_mode[2]


def test_a_fill_whose_fitted_proposal_is_not_trusted_comes_from_the_modes_student_t():
    # 0.3 N(-2, 1) + 0.7 N(2, 1), draws half in each: the right basin's fitted proposal is Gaussian
    # (its draws have no excess kurtosis) and the basin is cut off on its left, so the weights of
    # its far right tail grow: k = 6.1 on this sample (bench_mixing refused such a repair). The
    # mode's heavy-tailed Student-t fills the basin instead
    model = partial(two_mode_model, separation=2.0, weight_left=0.3)
    t = nsd.Target.from_model(model)
    modes = nsd.find_modes(t, jnp.array([[-2.0], [2.0]]))
    rng = np.random.default_rng(1)
    draws = np.where(rng.random(2000) < 0.5, rng.normal(-2, 1, 2000), rng.normal(2, 1, 2000)).reshape(4, 500, 1)
    basins = nsd.assign_basins(t, modes, draws)
    masses = nsd.mode_masses(t, modes, jax.random.PRNGKey(1), draws=draws, draw_basins=basins)
    right = int(np.argmax(modes.location[:, 0]))
    assert restricted_draws(t, modes, right, masses.pools[right], jax.random.PRNGKey(1), 500)[1] > 0.7
    repaired = repair(t, modes, masses, draws, basins, jax.random.PRNGKey(0))
    assert repaired.fill_pareto_k[right] <= 0.7
    assert abs(np.mean(nsd.assign_basins(t, modes, repaired.draws) == right) - masses.mass[right]) < 0.01
