"""Mode search against mixtures whose modes and basin masses are known, and a clear record when ascents
find no mode or run off."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from helpers import funnel, modes_and_masses, two_mode_model
from jax.scipy.special import gammaln

import numpyro_stein_diag as nsd


def test_two_unequal_modes_in_1d():
    t = nsd.Target.from_model(two_mode_model, weight_left=0.2)
    modes, masses = modes_and_masses(t)
    order = np.argsort(modes.location[:, 0])
    assert len(modes) == 2 and len(masses) == 2
    np.testing.assert_allclose(modes.location[order, 0], [-4.0, 4.0], atol=1e-3)
    # basins split at the density minimum (slightly right of 0); beyond +-4 sd the tails add < 1e-4
    for k, w in zip(order, [0.2, 0.8]):
        assert abs(masses.mass[k] - w) < max(0.03, 3 * masses.mass_se[k])
    assert masses.mass_method == "importance" and masses.pareto_k < 0.7


@pytest.mark.slow
def test_three_modes_in_3d_with_unequal_weights_and_covariances():
    weights = jnp.array([0.5, 0.3, 0.2])
    locs = jnp.array([[-5.0, 0, 0], [5, 0, 0], [0, 6, 0]])
    scales = jnp.array([1.0, 0.5, 2.0])

    def model():
        components = dist.Normal(locs, scales[:, None]).to_event(1)
        numpyro.sample("x", dist.MixtureSameFamily(dist.Categorical(weights), components))

    modes, masses = modes_and_masses(nsd.Target.from_model(model), num_prior_starts=64)
    assert len(modes) == 3
    nearest = [int(np.argmin(np.linalg.norm(modes.location - loc, axis=1))) for loc in np.asarray(locs)]
    np.testing.assert_allclose(modes.location[nearest], locs, atol=1e-2)
    # the Hessians are the component precisions: 1/scale^2 on the diagonal
    np.testing.assert_allclose(modes.hessian[nearest][:, 0, 0], 1 / scales**2, rtol=1e-2)
    for j, k in enumerate(nearest):
        assert abs(masses.mass[k] - weights[j]) < max(0.03, 3 * masses.mass_se[k])


@pytest.mark.slow
def test_modes_on_a_constrained_site_have_the_models_masses():
    # scale ~ 0.3 Gamma(2, 2) + 0.7 Gamma(60, 6): modes live in log space, the Jacobian is in
    # the log density, so the basin masses equal the mixture weights in the model's space
    def model():
        mix = dist.MixtureGeneral(
            dist.Categorical(jnp.array([0.3, 0.7])), [dist.Gamma(2.0, 2.0), dist.Gamma(60.0, 6.0)]
        )
        numpyro.sample("scale", mix)

    t = nsd.Target.from_model(model)
    modes, masses = modes_and_masses(t)
    assert len(modes) == 2
    order = np.argsort(modes.values["scale"])
    # modes of the log-space density s * p(s): Gamma(a, b) peaks at a / b there
    np.testing.assert_allclose(modes.values["scale"][order], [1.0, 10.0], rtol=0.02)
    # a Gamma(2,2) draw above the basin boundary (~4) has probability 0.003: truth 0.3 / 0.7
    for k, w in zip(order, [0.3, 0.7]):
        assert abs(masses.mass[k] - w) < max(0.03, 3 * masses.mass_se[k])


def test_unimodal_correlated_posterior_has_one_mode():
    cov = jnp.array([[1.0, 0.9], [0.9, 1.0]])
    t = nsd.Target.from_potential(lambda z: 0.5 * z @ jnp.linalg.solve(cov, z), jnp.zeros(2), init_scale=3.0)
    modes, masses = modes_and_masses(t)
    assert len(modes) == 1
    np.testing.assert_allclose(masses.mass, [1.0])
    np.testing.assert_allclose(modes.hessian[0], np.linalg.inv(cov), rtol=1e-3)
    # the potential is unnormalised: Laplace is exact for a Gaussian, log Z = log 2 pi + log det(cov) / 2
    np.testing.assert_allclose(modes.laplace_log_mass[0], np.log(2 * np.pi) + 0.5 * np.log(0.19), atol=1e-4)


def test_no_converged_start_is_a_clear_error():
    t = nsd.Target.from_potential(lambda z: -jnp.sum(z), jnp.zeros(1))  # improper: no mode
    with pytest.raises(
        ValueError, match=r"no mode found: 3 of 3 ascents ran off .* log density growing as x\[0\] -> inf"
    ):
        nsd.find_modes(t, jnp.zeros((3, 1)), num_iter=20)
    flat = nsd.Target.from_potential(lambda z: 0.0 * jnp.sum(z), jnp.zeros(1))  # flat: nowhere to go
    with pytest.raises(ValueError, match="none of 3 L-BFGS runs converged"):
        nsd.find_modes(flat, jnp.zeros((3, 1)), num_iter=20)


def test_a_mode_beside_a_runaway_direction_gets_no_mass_and_no_flag(tmp_path):
    # log p = -x^2 / 2 + 2 relu(x - 2)^2: a mode at 0 (log p = 0), and beyond x = 8/3 a density that grows without bound
    def log_p(x):
        return -0.5 * x**2 + 2.0 * max(x - 2.0, 0.0) ** 2

    t = nsd.Target.from_potential(
        lambda z: 0.5 * jnp.sum(z**2) - 2.0 * jnp.sum(jax.nn.relu(z - 2.0) ** 2), jnp.zeros(1)
    )
    modes = nsd.find_modes(t, jnp.array([[-1.0], [0.5], [3.5], [4.0]]), num_iter=50)
    assert len(modes) == 1 and abs(float(modes.location[0, 0])) < 1e-3
    runaway = modes.runaway  # the two starts beyond 8/3 ran off towards +inf, above the mode's log p = 0
    assert (runaway.ran_off, runaway.ascents, runaway.coordinate, runaway.space) == (2, 4, "x[0]", "model")
    assert runaway.limit == np.inf and runaway.highest_mode == pytest.approx(0.0, abs=1e-6) and runaway.modes_found
    assert runaway.reached > 4.0 and runaway.log_density == pytest.approx(log_p(runaway.reached), rel=1e-5)
    # they went on while they rose (50 steps, then 3 rounds of 200) and still gained over the last round
    assert (runaway.steps, runaway.gain_steps) == (650, 200) and runaway.gain > 1e3
    assert runaway.message.startswith(
        f"2 of 4 ascents ran off without converging: they were still climbing after 650 steps (the highest "
        f"gained {runaway.gain:.3g} over its last 200), the log density growing as x[0] -> inf (it reached "
        f"{runaway.log_density:.4g} at x[0] = {runaway.reached:.3g}, above every mode found)."
    )
    masses = nsd.mode_masses(t, modes, jax.random.PRNGKey(0))
    assert masses.mass_method == "none" and np.isnan(masses.mass).all()
    # draws all in the runaway region: nothing to judge them against, so no flag at all
    check = nsd.check_mode_mass("m", -np.ones((1, 10), int), modes, masses)
    assert check.flags == ()
    # the report keeps the record as data: it loads back equal, field for field
    report = nsd.Report.build(modes, masses, {}, [])
    report.save(tmp_path / "report.nc")
    loaded = nsd.Report.load(tmp_path / "report.nc")
    assert loaded == report and loaded.modes.runaway == runaway
    assert nsd.Report.build(dataclasses.replace(modes, runaway=None), masses, {}, []).modes.runaway is None


def test_mode_names_tell_every_mode_apart():
    # four sign-flip modes of a 6-number site: the largest spread (coordinate 0) splits them in
    # pairs only, so a second coordinate is added until no two names are alike
    signs = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], float)
    w = np.concatenate([2.0 * signs[:, :1], 0.5 * signs[:, 1:], np.ones((4, 4))], axis=1)
    modes = nsd.Modes(
        location=w,
        log_density=np.zeros(4),
        hessian=np.tile(np.eye(6), (4, 1, 1)),
        laplace_log_mass=np.zeros(4),
        values={"w": w},
    )
    labels = [modes.label(k) for k in range(4)]
    assert len(set(labels)) == 4 and all(label.count("=") == 2 for label in labels)
    assert labels[0] == "w[0] = 2, w[1] = 0.5"


def test_a_funnels_neck_is_a_degenerate_point_not_a_mode(tmp_path):
    t = nsd.Target.from_model(funnel)
    starts = np.column_stack([np.linspace(-2, 2, 16), np.zeros((16, 9))])  # on the axis x = 0: straight to the neck
    with pytest.raises(ValueError, match=r"no mode found: 16 of 16 ascents ended at a degenerate point \(v = -40.5"):
        nsd.find_modes(t, starts, num_iter=200)
    # beside a real mode the record is kept, and the report stores it field by field
    gaussian = nsd.Target.from_potential(lambda z: 0.5 * jnp.sum(z**2), jnp.zeros(1))
    modes = nsd.find_modes(gaussian, jnp.zeros((2, 1)))
    neck = nsd.Degenerate(
        count=16, ascents=16, stiff="x[0]", soft="v", condition=3.5e18, log_density=80.8, location="v = -40.5"
    )
    assert "the curvature along x[0] is 3.5e+18 times that along v" in neck.message
    modes = dataclasses.replace(modes, degenerate=neck)
    report = nsd.Report.build(modes, nsd.mode_masses(gaussian, modes, jax.random.PRNGKey(0)), {}, [])
    report.save(tmp_path / "report.nc")
    assert nsd.Report.load(tmp_path / "report.nc").modes.degenerate == neck


def normal_and_student_t(d: int):
    """The potential of 0.3 N(-15 e1, I) + 0.7 t_5(15 e1, I) in d dimensions (a t mode of log
    density log 0.7 + log Gamma((5 + d) / 2) - log Gamma(5 / 2) - d / 2 log(5 pi))."""
    shift = jnp.zeros(d).at[0].set(15.0)

    def potential(x):
        log_normal = -0.5 * jnp.sum((x + shift) ** 2) - 0.5 * d * jnp.log(2 * jnp.pi)
        r2 = jnp.sum((x - shift) ** 2)
        log_t = (
            gammaln((5.0 + d) / 2) - gammaln(2.5) - 0.5 * d * jnp.log(5.0 * jnp.pi) - (5.0 + d) / 2 * jnp.log1p(r2 / 5)
        )
        return -jnp.logaddexp(jnp.log(0.3) + log_normal, jnp.log(0.7) + log_t)

    return potential


def test_a_heavy_tailed_mode_is_found_from_far_draws_at_d50_and_is_no_runaway():
    # exact draws: 8 from the normal, the 8 farthest of 400 from the t (radius 17-35), 30 steps each.
    # Before, their ascents ran out of steps on the way and 3 were called runaways ("x[5] -> inf"),
    # and the t mode was missed; now an ascent still rising goes on until it converges.
    d = 50
    rng = np.random.default_rng(0)
    shift = np.zeros(d)
    shift[0] = 15.0
    normal = rng.normal(size=(8, d)) - shift
    student = rng.normal(size=(400, d)) / np.sqrt(rng.chisquare(5, size=(400, 1)) / 5) + shift
    farthest = student[np.argsort(-np.linalg.norm(student - shift, axis=1))[:8]]
    t = nsd.Target.from_potential(normal_and_student_t(d), jnp.zeros(d))
    modes = nsd.find_modes(t, np.concatenate([normal, farthest]), num_iter=30)
    assert modes.runaway is None and len(modes) == 2
    top = int(np.argmax(modes.location[:, 0]))
    np.testing.assert_allclose(modes.location[top], shift, atol=1e-3)
    log_mode = float(np.log(0.7) + gammaln((5 + d) / 2) - gammaln(2.5) - 0.5 * d * np.log(5 * np.pi))
    assert modes.log_density[top] == pytest.approx(log_mode, abs=1e-3)
    # the t draws' basins: every one of the 400 ends at the t mode
    np.testing.assert_array_equal(nsd.assign_basins(t, modes, student), top)


def test_a_search_extends_the_modes_it_knows():
    """known=: the ascents that end at a known mode add to its start count, the others are new modes."""
    t = nsd.Target.from_model(two_mode_model)
    left = nsd.find_modes(t, np.array([[-4.5], [-3.5]]))
    both = nsd.find_modes(t, np.array([[-4.2], [3.0], [5.0]]), known=left)
    np.testing.assert_allclose(np.sort(both.location[:, 0]), [-4.0, 4.0], atol=1e-3)
    by_side = dict(zip(np.sign(both.location[:, 0]), both.start_counts))
    assert by_side == {-1.0: 3, 1.0: 2} and left.start_counts.tolist() == [2]
