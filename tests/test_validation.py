"""Input validation: each gap a new user met gets a one-line error naming the site, the shapes and
the fix; independent draws can be declared."""

import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
import xarray as xr
from helpers import mixture_draws, two_mode_model

import numpyro_stein_diag as nsd
from numpyro_stein_diag.check import basin_rhat
from numpyro_stein_diag.diagnose import run_from_samples
from numpyro_stein_diag.validation import (
    MIN_DRAWS,
    InputError,
    ModelError,
    check_chain_draw_axes,
    check_independent_names,
    sample_axes,
)


def scalar_and_vector_model():
    numpyro.sample("a", dist.Normal())
    numpyro.sample("b", dist.Normal().expand([3]))


# ---------------------------------------------------------------- shapes
def test_a_wrong_shape_is_reported_for_the_site_that_has_it():
    # 'a' (scalar) came with a stray trailing axis. Its sample axes used to be taken as everyone's,
    # and the error blamed 'b', whose shape was right.
    t = nsd.Target.from_model(scalar_and_vector_model)
    samples = {"a": np.zeros((4, 100, 2)), "b": np.zeros((4, 100, 3))}
    with pytest.raises(
        InputError,
        match=r"^samples\['s'\]: site 'a' has shape \(4, 100, 2\); the model's site 'a' "
        r"has shape \(\), so it needs shape \(chain, draw\): it has 3 leading axes",
    ):
        run_from_samples(t, "s", samples)
    # without a known number of sample axes (Target.unconstrain), the axes most sites share win;
    # on a tie the shorter, so again 'a' is named, with both sites' axes
    with pytest.raises(InputError, match=r"site 'a' has sample axes \(4, 100, 2\).*site\(s\) \['b'\] have \(4, 100\)"):
        t.unconstrain(samples)


def test_sample_axes_names_the_odd_site_out():
    shapes = {"a": (), "b": (2,), "c": ()}
    assert sample_axes({"a": np.zeros((3, 5)), "b": np.zeros((3, 5, 2)), "c": np.zeros((3, 5))}, shapes) == (3, 5)
    with pytest.raises(InputError, match=r"site 'c' has sample axes \(3, 4\).*\['a', 'b'\] have \(3, 5\)"):
        sample_axes({"a": np.zeros((3, 5)), "b": np.zeros((3, 5, 2)), "c": np.zeros((3, 4))}, shapes)
    with pytest.raises(InputError, match=r"site 'b' has shape \(3, 5, 4\).*trailing axes must be the site's shape"):
        sample_axes({"a": np.zeros((3, 5)), "b": np.zeros((3, 5, 4)), "c": np.zeros((3, 5))}, shapes, 2)


# ---------------------------------------------------------------- (chain, draw) axes
def test_swapped_chain_and_draw_axes_are_refused_with_the_fix():
    # 100 draws of 2 chains given as (draw, chain): read as 100 chains of 2 draws
    t = nsd.Target.from_model(two_mode_model)
    x = mixture_draws(np.random.default_rng(0), 0.5, (100, 2))
    with pytest.raises(
        InputError,
        match=r"samples\['s'\]: 100 chains of 2 draws \(site 'x' has shape \(100, 2\).*"
        r"look swapped.*np\.swapaxes\(x, 0, 1\).*independent=\{'s'\}",
    ):
        run_from_samples(t, "s", {"x": x})
    assert run_from_samples(t, "s", {"x": x.T}).draws.shape == (2, 100, 1)  # the fix it names
    assert run_from_samples(t, "s", {"x": x}, independent=True).independent  # declared independent
    # named axes are taken as they say: 100 short chains in a DataTree pass
    tree = xr.DataTree.from_dict({"posterior": xr.Dataset({"x": (("chain", "draw"), x)})})
    assert run_from_samples(t, "s", tree).draws.shape == (100, 2, 1)


def test_the_minimum_is_two_draws_and_odd_chain_lengths_work():
    with pytest.raises(InputError, match=rf"1 draw \(site 'x' has shape \(1, 1\)\).*at least {MIN_DRAWS}"):
        check_chain_draw_axes((1, 1), "s", "x", (), independent=False, axes_named=False)
    check_chain_draw_axes((1, 2), "s", "x", (), independent=False, axes_named=False)
    # 1 chain x 5 draws used to fail the check stage with numpy's concatenation message: the split
    # into halves kept the middle draw in the second half. Halves drop it, as arviz's do.
    rng = np.random.default_rng(1)
    for shape in [(1, 5), (4, 501)]:
        basins = rng.integers(0, 2, shape)
        assert basin_rhat(basins, 2).shape == (2,)
    report = nsd.diagnose(
        two_mode_model, samples={"s": {"x": mixture_draws(rng, 0.5, (1, 5))}}, methods=(), progress_bar=False
    )
    # smoothness, modes, masses, check, repair
    assert report.complete and [s.status for s in report.stages] == ["ok"] * 5


# ---------------------------------------------------------------- dtypes
def test_integer_draws_are_cast_to_float_and_other_dtypes_refused():
    # integer draws used to reach the mode search as int32 and fail there with
    # "OverflowError: cannot convert float infinity to integer"
    t = nsd.Target.from_model(two_mode_model)
    x = np.random.default_rng(2).integers(-6, 7, (2, 50))
    run = run_from_samples(t, "s", {"x": x})
    assert run.draws.dtype == np.float32 and run.samples["x"].dtype == np.float32
    np.testing.assert_array_equal(run.draws[..., 0], x.astype(np.float32))
    with pytest.raises(InputError, match=r"samples\['s'\]: site 'x' has dtype bool.*continuous.*dtype=float"):
        run_from_samples(t, "s", {"x": x > 0})


# ---------------------------------------------------------------- errors inside the model
def test_an_error_inside_the_model_says_what_was_being_done():
    def python_branch_model():
        x = numpyro.sample("x", dist.Normal())
        if x > 0:  # fine in the one eager trace, fails when the model is evaluated at all draws at once
            numpyro.sample("y", dist.Normal(x, 1.0), obs=1.0)

    t = nsd.Target.from_model(python_branch_model)
    x = np.array([[1.5, -0.25, 0.5, 2.0]])
    with pytest.raises(
        ModelError,
        match=r"TracerBoolConversionError while diagnose\(\) was evaluating it at the "
        r"draws of samples\['s'\].*at site values x=1\.5: ",
    ) as info:
        run_from_samples(t, "s", {"x": x})
    assert type(info.value.__cause__).__name__ == "TracerBoolConversionError"


def test_an_error_while_building_the_target_names_the_sites_so_far():
    settings = {}

    def model():
        numpyro.sample("mu", dist.Normal().expand([8]))
        numpyro.sample("tau", dist.HalfNormal(1.0))
        settings["scale"]  # the user's bug: a setting that was never made

    with pytest.raises(
        ModelError,
        match=r"KeyError while Target.from_model was building the target.*"
        r"mu=\[.*\] \(shape \(8,\)\), tau=[0-9.]+: 'scale'",
    ) as info:
        nsd.diagnose(model, samples={"s": {}}, methods=(), progress_bar=False)
    assert isinstance(info.value.__cause__, KeyError)

    def potential(p):
        raise ZeroDivisionError("the user's potential")

    with pytest.raises(
        ModelError,
        match=r"ZeroDivisionError while Target.from_potential was building the target "
        r"\(evaluating potential_fn at example_params\), at site values x=\[0\. 0\.\]",
    ):
        nsd.Target.from_potential(potential, np.zeros(2))


# ---------------------------------------------------------------- independent draws
def test_declared_independent_draws_raise_no_flag_and_are_reported_independent(one_chain_report):
    r = one_chain_report
    assert len(r.modes) == 2
    for name in ("declared", "tree"):
        assert r.diagnostics(name).attrs["independent"] == 1 and r.checks[name].transitions is None
        assert r.checks[name].ess.tolist() == [2000.0, 2000.0]  # ESS = n
        assert not [f for f in r.flags if f.method == name]
        assert int(r.to_datatree(name)["stein_diagnostics"].attrs["independent"]) == 1


def test_independent_names_must_be_samples():
    assert check_independent_names("s", {"s": {}}) == {"s"}
    with pytest.raises(InputError, match=r"independent names \['nuts'\], which are not in samples \['s'\]"):
        check_independent_names({"s", "nuts"}, {"s": {}})
