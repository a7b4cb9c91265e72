"""Target: a model as a flat unconstrained log density, and every bad input it must refuse."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from scipy import integrate, stats

from numpyro_stein_diag import Target
from numpyro_stein_diag.target import TARGET_CACHE_SIZE
from numpyro_stein_diag.validation import ModelError


def constrained_model():
    numpyro.sample("scale", dist.HalfNormal(1.0))
    numpyro.sample("weights", dist.Dirichlet(jnp.ones(3)))
    numpyro.sample("loc", dist.Normal(0.0, 2.0).expand([2]))


def half_normal_model():
    numpyro.sample("scale", dist.HalfNormal(1.0))


def test_log_density_includes_the_log_jacobian():
    # x = log(scale): log pi(x) = log HalfNormal(e^x) + x (the log-Jacobian of exp)
    t = Target.from_model(half_normal_model)
    x = jnp.linspace(-3.0, 2.0, 7)[:, None]
    expected = stats.halfnorm.logpdf(np.exp(x[:, 0])) + x[:, 0]
    np.testing.assert_allclose(t.log_density(x), expected, rtol=1e-5)
    # ...so the density integrates to the model's mass, 1, on R
    mass, _ = integrate.quad(lambda z: float(jnp.exp(t.log_density(jnp.array([z])))), -30, 10)
    assert abs(mass - 1.0) < 1e-5


def test_score_is_the_gradient_and_works_under_jit_and_vmap():
    t = Target.from_model(constrained_model)
    x = t.initial_points(jax.random.PRNGKey(0), 8)
    score = jax.jit(jax.vmap(t.score))(x)
    np.testing.assert_allclose(score, t.score(x), rtol=1e-5, atol=1e-5)
    eps = 1e-3
    e0 = jnp.zeros(t.dim).at[0].set(eps)
    finite_diff = (t.log_density(x + e0) - t.log_density(x - e0)) / (2 * eps)
    np.testing.assert_allclose(score[:, 0], finite_diff, rtol=2e-2, atol=2e-2)
    assert t.dim == 1 + 2 + 2  # a 3-simplex has 2 free coordinates


def test_constrain_unconstrain_round_trip_and_support():
    t = Target.from_model(constrained_model)
    x = t.initial_points(jax.random.PRNGKey(1), 50)
    values = t.constrain(x)
    assert values["weights"].shape == (50, 3) and values["loc"].shape == (50, 2)
    assert jnp.all(values["scale"] > 0)
    np.testing.assert_allclose(values["weights"].sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(t.unconstrain(values), x, atol=1e-5)
    # leading (chain, draw) axes are kept both ways
    chains = t.constrain(x.reshape(5, 10, t.dim))
    assert chains["loc"].shape == (5, 10, 2)
    assert t.unconstrain(chains).shape == (5, 10, t.dim)


def test_initial_points_are_prior_draws():
    t = Target.from_model(half_normal_model)
    scale = jnp.exp(t.initial_points(jax.random.PRNGKey(2), 4000)[:, 0])
    # HalfNormal(1) has mean sqrt(2/pi) and sd sqrt(1 - 2/pi); 4 standard errors
    se = np.sqrt(1 - 2 / np.pi) / np.sqrt(4000)
    assert abs(float(scale.mean()) - np.sqrt(2 / np.pi)) < 4 * se


def test_from_potential_on_a_dict_and_on_an_array():
    def potential(p):
        return 0.5 * jnp.sum(p["a"] ** 2) + 0.5 * p["b"] ** 2

    t = Target.from_potential(potential, {"a": jnp.zeros(2), "b": 0.0})
    assert t.dim == 3 and t.site_shapes == {"a": (2,), "b": ()}
    x = jnp.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(t.score(x), -x)
    np.testing.assert_allclose(t.unconstrain(t.constrain(x[None])), x[None])
    t1 = Target.from_potential(lambda z: 0.5 * jnp.sum(z**2), jnp.zeros(2))
    assert set(t1.constrain(jnp.ones((4, 2)))) == {"x"}
    assert t1.initial_points(jax.random.PRNGKey(0), 3).shape == (3, 2)


def test_from_potential_on_a_tuple_pytree():
    def potential(p):
        mu, rest = p
        return 0.5 * jnp.sum(mu**2) + 0.5 * jnp.sum((rest["s"] - 1.0) ** 2)

    t = Target.from_potential(potential, (jnp.zeros(2), {"s": jnp.zeros(3)}))
    assert t.dim == 5 and t.site_shapes == {"x.0": (2,), "x.1.s": (3,)}
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 5))
    samples = t.constrain(x)
    np.testing.assert_allclose(samples["x.1.s"], x[:, 2:])
    np.testing.assert_allclose(t.unconstrain(samples), x)
    np.testing.assert_allclose(t.score(x), -(x - jnp.array([0, 0, 1, 1, 1.0])), rtol=1e-6)


# ---------------------------------------------------------------- bad inputs
def test_discrete_latent_site_is_named():
    def model():
        numpyro.sample("k", dist.Poisson(3.0))

    with pytest.raises(ValueError, match=r"latent site 'k'.*discrete.*enumerate"):
        Target.from_model(model)


def test_log_density_not_finite_anywhere():
    def model():
        rate = numpyro.sample("rate", dist.Exponential(1.0))
        numpyro.sample("obs", dist.Exponential(rate), obs=jnp.array(jnp.nan))

    with pytest.raises(ValueError, match="not finite at any initial point"):
        Target.from_model(model)


def test_potential_not_finite_at_example():
    with pytest.raises(ValueError, match="must be finite at example_params"):
        Target.from_potential(lambda z: jnp.log(z).sum(), -jnp.ones(2))


def test_a_potential_that_returns_more_than_one_number_is_refused():
    with pytest.raises(ValueError, match=r"has shape \(2,\); a potential returns one number"):
        Target.from_potential(lambda z: 0.5 * z**2, jnp.zeros(2))


def test_integer_example_params_are_refused():
    with pytest.raises(ValueError, match=r"\['n'\].*float"):
        Target.from_potential(lambda p: p["a"] ** 2, {"a": 0.0, "n": jnp.array(3)})


@pytest.mark.parametrize(
    "samples, message",
    [
        ({"scale": np.ones((2, 5))}, r"missing \['loc', 'weights'\]"),
        (
            {
                "scale": np.ones((2, 5)),
                "loc": np.zeros((2, 5, 2)),
                "weights": np.ones((2, 5, 3)) / 3,
                "typo": np.ones(2),
            },
            r"unknown \['typo'\]",
        ),
        (
            {"scale": np.ones((2, 5)), "loc": np.zeros((2, 5, 3)), "weights": np.ones((2, 5, 3)) / 3},
            r"site 'loc' has shape \(2, 5, 3\).*\(2,\)",
        ),
        (
            {"scale": np.ones((2, 5)), "loc": np.zeros((2, 4, 2)), "weights": np.ones((2, 5, 3)) / 3},
            "same \\(chain, draw\\) axes",
        ),
        (
            {"scale": np.full((2, 5), np.nan), "loc": np.zeros((2, 5, 2)), "weights": np.ones((2, 5, 3)) / 3},
            "site 'scale' has 10 non-finite",
        ),
        (
            {"scale": np.ones((0,)), "loc": np.zeros((0, 2)), "weights": np.ones((0, 3)) / 3},
            "is empty",
        ),
        (  # the scalar site has the stray axis: it is named, not the sites that are right
            {"scale": np.ones((2, 5, 2)), "loc": np.zeros((2, 5, 2)), "weights": np.ones((2, 5, 3)) / 3},
            r"site 'scale' has sample axes \(2, 5, 2\).*\['weights', 'loc'\] have \(2, 5\)",
        ),
        (
            {"scale": np.ones((2, 5)), "loc": np.zeros((2, 5, 2), complex), "weights": np.ones((2, 5, 3)) / 3},
            r"site 'loc' has dtype complex128.*continuous",
        ),
        (
            {"scale": -np.ones((2, 5)), "loc": np.zeros((2, 5, 2)), "weights": np.ones((2, 5, 3)) / 3},
            r"site 'scale' has 10 of 10 draws outside its support.*sample index \(0, 0\)",
        ),
    ],
    ids=["missing", "unknown", "shape", "axes", "nan", "empty", "stray-axis", "dtype", "support"],
)
def test_samples_that_do_not_fit_the_model(samples, message):
    t = Target.from_model(constrained_model)
    with pytest.raises(ValueError, match=message):
        t.unconstrain(samples)


def test_integer_draws_are_cast_to_float():
    t = Target.from_model(constrained_model)
    counts = {
        "scale": np.arange(1, 7).reshape(2, 3),
        "loc": np.arange(12).reshape(2, 3, 2),
        "weights": np.full((2, 3, 3), 1 / 3),
    }
    as_float = {k: np.asarray(v, dtype=np.float32) for k, v in counts.items()}
    flat = t.unconstrain(counts)
    assert flat.dtype == jnp.float32
    np.testing.assert_array_equal(flat, t.unconstrain(as_float))
    scale = t.coordinate_names.index("scale")
    np.testing.assert_allclose(flat[..., scale], np.log(as_float["scale"]), rtol=1e-6)  # log of 1..6


def test_errors_raised_by_the_model_say_the_target_was_being_built():
    def model(y):
        mu = numpyro.sample("mu", dist.Normal())
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y.reshape(2, 2))  # 3 data points cannot be (2, 2)

    with pytest.raises(
        ModelError,
        match=r"raised ValueError while Target.from_model was building the target \(running "
        r"the model once with prior draws\), at site values mu=-?[0-9.]+: cannot "
        r"reshape array of size 3 into shape \(2,2\)",
    ) as info:
        Target.from_model(model, np.arange(3.0))
    assert isinstance(info.value.__cause__, ValueError) and not isinstance(info.value, ValueError)


def test_deterministic_sites_in_samples_are_accepted():
    def model():
        z = numpyro.sample("z", dist.Normal())
        numpyro.deterministic("z2", z**2)

    t = Target.from_model(model)
    flat = t.unconstrain({"z": np.ones((2, 3)), "z2": np.ones((2, 3))})
    assert flat.shape == (2, 3, 1)


def test_the_same_model_and_data_give_the_same_target():
    def model(y, scale=1.0, shift=0.0):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(mu + shift, scale), obs=y)

    y = np.arange(3.0)
    first = Target.from_model(model, y)
    assert Target.from_model(model, y.copy()) is first  # equal data, compared by value
    assert Target.from_model(model, y + 1.0) is not first and Target.from_model(model, y, scale=2.0) is not first
    assert Target.from_model(model, y, scale=2.0, shift=1.0) is Target.from_model(model, y, shift=1.0, scale=2.0)
    typed = Target.from_model(model, y, rng_key=jax.random.key(1))  # a typed PRNG key, by its key data
    assert Target.from_model(model, y, rng_key=jax.random.key(1)) is typed and typed is not first
    Target.clear_cache()
    assert Target.from_model(model, y) is not first


def test_the_cache_drops_the_least_recently_used_target():
    def model(y):
        numpyro.sample("y", dist.Normal(numpyro.sample("mu", dist.Normal()), 1.0), obs=y)

    Target.clear_cache()
    targets = [Target.from_model(model, float(i)) for i in range(TARGET_CACHE_SIZE)]  # the cache is full
    assert Target.from_model(model, 0.0) is targets[0]  # used again: now the most recent
    Target.from_model(model, -1.0)  # one more drops the least recently used, y = 1
    assert Target.from_model(model, 0.0) is targets[0] and Target.from_model(model, 2.0) is targets[2]
    assert Target.from_model(model, 1.0) is not targets[1]


def test_both_constructors_fill_every_field():
    def model(y):
        mu = numpyro.sample("mu", dist.Normal())
        numpyro.deterministic("mu2", mu**2)
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    t = Target.from_model(model, np.ones(2))
    assert t.kind == "model" and t.model_call.model is model and t.model_call.args[0].shape == (2,)
    assert t.extra_sites == {"mu2", "y"} and t.site_supports == {"mu": dist.constraints.real}
    p = Target.from_potential(lambda z: 0.5 * jnp.sum(z**2), jnp.zeros(2), init_scale=3.0)
    assert p.kind == "potential" and p.model_call is None and p.extra_sites == frozenset()
    assert p.site_supports == {"x": dist.constraints.real}
    # a potential's starts are N(example_params, init_scale^2 I): sd 3 within 4 standard errors (n = 4000)
    sd = np.std(np.asarray(p.initial_points(jax.random.PRNGKey(0), 4000)), axis=0)
    np.testing.assert_allclose(sd, 3.0, atol=4 * 3.0 / np.sqrt(2 * 4000))


def test_a_model_whose_prior_cannot_be_sampled_starts_in_numpyros_uniform_box():
    def model():
        x = numpyro.sample("x", dist.ImproperUniform(dist.constraints.real, (), (2,)))
        numpyro.factor("density", -0.5 * jnp.sum(x**2))

    starts = np.asarray(Target.from_model(model).initial_points(jax.random.PRNGKey(0), 2000))
    assert starts.min() >= -2.0 and starts.max() <= 2.0  # Uniform(-2, 2): mean 0, sd 4 / sqrt(12)
    np.testing.assert_allclose(starts.std(axis=0), 4 / np.sqrt(12), atol=4 * 1.155 / np.sqrt(2 * 2000))
