"""A NumPyro model, or a raw potential, as a flat log density on unconstrained R^d.

Everything else in the package works on one object, :class:`Target`:

.. math::

    \\log \\pi(x) = \\log p(T(x) \\mid \\text{data}) + \\log |\\det J_T(x)|, \\qquad x \\in \\mathbb{R}^d,

where ``T`` maps unconstrained to constrained values site by site. Because the
log-Jacobian is included, a region of R^d holds the same posterior mass as its
image in the model's space: mode masses estimated here are the model's masses.

A Target is a record of callables (as numpyro's ``ModelInfo`` or a blackjax ``logdensity_fn``)
that :meth:`Target.from_model` and :meth:`Target.from_potential` fill alike; what differs
between the two is in the callables, and which one built it is its ``kind``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache, partial
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.distributions import constraints
from numpyro.infer import init_to_uniform
from numpyro.infer.util import Predictive, constrain_fn, initialize_model, unconstrain_fn

from .host import map_chunks
from .validation import (
    check_example_params,
    check_latent_sites,
    check_potential_value,
    check_supports,
    finite_initial_point,
    model_errors,
    validate_samples,
)

__all__ = ["ModelCall", "Target"]

TARGET_CACHE_SIZE = 16  # Targets that Target.from_model keeps, the least recently used dropped first
SCORE_CHUNK = 1024  # rows per compiled call of log_density_and_score_rows (the KSD's draws, the smoothness legs)


@dataclass(frozen=True)
class ModelCall:
    """``model(*args, **kwargs)``: a NumPyro model with the arguments it is conditioned on, and the
    ``rng_key`` its Target is built with.

    Equal and hashed by ``fingerprint`` alone (the model by identity, arrays by shape, dtype and a
    digest of their bytes, other arguments by value, or by identity when they cannot be hashed),
    so equal data passed again finds the Target built before (:meth:`Target.from_model`).
    """

    model: Callable = field(compare=False)
    args: tuple = field(compare=False)
    kwargs: dict = field(compare=False)
    rng_key: jax.Array = field(compare=False, repr=False)
    fingerprint: tuple = field(init=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "fingerprint", _fingerprint((self.model, self.args, self.kwargs, self.rng_key)))


@dataclass(frozen=True, eq=False)
class Target:
    """A posterior as a flat, unconstrained log density (hashable by identity, so a static jit argument).

    Build it with :meth:`from_model` or :meth:`from_potential`, which fill every field; do not call
    the constructor.

    Attributes
    ----------
    kind : "model" or "potential"
        Which constructor built it.
    potential_fn : callable
        Unconstrained pytree -> ``-log pi`` (for a model numpyro's, the log-Jacobian included).
    init_params : pytree
        An unconstrained point where the log density is finite; it fixes the pytree that ``x`` of
        shape ``(d,)`` is unravelled into.
    site_shapes : dict
        ``{site: shape}`` of every latent site in the model's (constrained) space.
    site_supports : dict
        ``{site: numpyro constraint}``; a potential's sites are all ``constraints.real``.
    extra_sites : frozenset
        Sites a sample may carry besides the latent ones (a model's deterministic and observed
        sites; none for a potential).
    constrain_sites, unconstrain_sites : callable
        One point's unconstrained ``{site: value}`` -> constrained (``deterministic=True`` adds a
        model's deterministic sites), and back; for a potential both only name the leaves.
    initial_points : callable
        ``initial_points(rng_key, n)`` -> ``n`` over-dispersed starting points ``(n, d)``. For a
        model: prior draws mapped to unconstrained space, or where the prior cannot be sampled (an
        ``ImproperUniform`` site whose density is given by ``numpyro.factor``) ``Uniform(-2, 2)`` in
        every unconstrained coordinate, as numpyro's ``init_to_uniform`` starts its chains. For a
        potential: the example parameters plus ``N(0, init_scale^2 I)``.
    model_call : ModelCall or None
        The model and its arguments; a potential has none.
    """

    kind: Literal["model", "potential"]
    potential_fn: Callable[[Any], jax.Array]
    init_params: Any
    site_shapes: dict[str, tuple[int, ...]]
    site_supports: dict[str, constraints.Constraint]
    extra_sites: frozenset[str]
    constrain_sites: Callable[..., dict]
    unconstrain_sites: Callable[[dict], dict]
    initial_points: Callable[[jax.Array, int], jax.Array]
    model_call: ModelCall | None

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_model(cls, model: Callable, *model_args, rng_key=None, **model_kwargs) -> Target:
        """The posterior of a NumPyro ``model(*model_args, **model_kwargs)``.

        Built on :func:`numpyro.infer.util.initialize_model`, whose ``potential_fn``
        includes the log-Jacobian of the constraining transforms. The same model with equal
        arguments (arrays compared by shape, dtype and bytes; see :class:`ModelCall`) gives back
        the same Target, so everything compiled for it (ascents, curvature, scores, SVGD steps, all
        keyed by the Target) is reused by a second :func:`~numpyro_stein_diag.diagnose` call; the
        ``TARGET_CACHE_SIZE`` most recently used are kept. As with :func:`jax.jit`, a model that
        reads data from global variables rather than its arguments is not rebuilt when they
        change: call :meth:`clear_cache` then.

        Raises
        ------
        ValueError
            (:class:`~numpyro_stein_diag.validation.InputError`) If a latent site is discrete and
            not enumerated, or if no initial point with a finite log density can be found.
        ModelError
            (:class:`~numpyro_stein_diag.validation.ModelError`) If the model itself raises while it
            is run: the message says at which step and site values, the model's error is its cause.
        """
        rng_key = jax.random.PRNGKey(0) if rng_key is None else rng_key
        return _model_target(ModelCall(model, model_args, model_kwargs, rng_key))

    @staticmethod
    def clear_cache() -> None:
        """Forget the Targets :meth:`from_model` keeps (and so what was compiled for them)."""
        _model_target.cache_clear()

    @classmethod
    def from_potential(
        cls, potential_fn: Callable[[Any], jax.Array], example_params: Any, init_scale: float = 1.0
    ) -> Target:
        """A target given by its potential ``U(params) = -log p(params)`` on an unconstrained pytree.

        ``example_params`` fixes the structure and is the centre of :attr:`initial_points`,
        which adds ``N(0, init_scale^2 I)`` jitter. Each array leaf is one site, named by
        its path: a dict ``{"a": ..., "b": ...}`` gives sites ``a`` and ``b`` (nested keys
        joined by dots), a single array is the site ``x``, and any other pytree's leaves are
        ``x.0``, ``x.1``, ... (a tuple ``(mu, {"s": ...})`` gives ``x.0`` and ``x.1.s``).
        """
        check_example_params(example_params)
        params = jax.tree_util.tree_map(jnp.asarray, example_params)
        names = _site_names(params)
        treedef = jax.tree_util.tree_structure(params)

        def to_sites(p, deterministic=False):  # a potential has no deterministic sites
            return dict(zip(names, jax.tree_util.tree_leaves(p)))

        def from_sites(values):
            return jax.tree_util.tree_unflatten(treedef, [values[name] for name in names])

        with model_errors(
            "Target.from_potential was building the target (evaluating potential_fn at example_params)",
            lambda: to_sites(params),
        ):
            check_potential_value(potential_fn(params))
        return cls(
            kind="potential",
            potential_fn=potential_fn,
            init_params=params,
            site_shapes={name: tuple(jnp.shape(v)) for name, v in to_sites(params).items()},
            site_supports=dict.fromkeys(names, constraints.real),
            extra_sites=frozenset(),
            constrain_sites=to_sites,
            unconstrain_sites=from_sites,
            initial_points=_jitter_around(ravel_pytree(params)[0], float(init_scale)),
            model_call=None,
        )

    # ------------------------------------------------------------------ densities
    @cached_property
    def unravel(self) -> Callable[[jax.Array], Any]:
        """Flat ``(d,)`` -> the unconstrained pytree :attr:`potential_fn` takes."""
        return ravel_pytree(self.init_params)[1]

    @cached_property
    def dim(self) -> int:
        """Dimension ``d`` of the flat unconstrained space."""
        return int(sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(self.init_params)))

    # Every method that evaluates the model is compiled, once per Target and shape (the Target is
    # the static argument): called from Python it runs as one XLA program instead of op by op
    # (dispatched eagerly, a vmapped model density compiles a small program for each op it runs);
    # called inside another jitted function it is inlined.
    @partial(jax.jit, static_argnums=0)
    def log_density(self, x: jax.Array) -> jax.Array:
        """``log pi(x)`` for flat unconstrained ``x`` of shape ``(..., d)``."""
        return jnp.vectorize(self._log_density_1d, signature="(d)->()")(x)

    @partial(jax.jit, static_argnums=0)
    def score(self, x: jax.Array) -> jax.Array:
        """``grad_x log pi(x)`` for ``x`` of shape ``(..., d)``, by :func:`jax.grad`."""
        return jnp.vectorize(jax.grad(self._log_density_1d), signature="(d)->(d)")(x)

    @partial(jax.jit, static_argnums=0)
    def log_density_and_score(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(log pi(x), grad log pi(x))`` in one pass (:func:`jax.value_and_grad`), ``x (..., d)``."""
        return jnp.vectorize(jax.value_and_grad(self._log_density_1d), signature="(d)->(),(d)")(x)

    def log_density_and_score_rows(self, y) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`log_density_and_score` at each row of ``y (n, d)``, as NumPy, in padded chunks of
        ``SCORE_CHUNK`` rows: one compilation for every ``n`` (the KSD tests' draws, their
        perturbed copies and the smoothness check's legs share it)."""
        return map_chunks(self.log_density_and_score, np.asarray(y), SCORE_CHUNK)

    def _log_density_1d(self, x):
        return -self.potential_fn(self.unravel(x))

    @property
    def unconstrained_shapes(self) -> dict[str, tuple[int, ...]]:
        """``{site: shape}`` in the unconstrained space (a Dirichlet over 3 categories: ``(2,)``)."""
        leaves = jax.tree_util.tree_leaves(self.init_params)
        return {site: tuple(jnp.shape(leaf)) for site, leaf in zip(_site_names(self.init_params), leaves)}

    @property
    def coordinates(self) -> list[tuple[str, tuple[int, ...]]]:
        """``(site, index)`` of each of the ``d`` flat coordinates, the index in the unconstrained
        site's shape (:attr:`unconstrained_shapes`)."""
        return [(site, i) for site, shape in self.unconstrained_shapes.items() for i in np.ndindex(shape)]

    @property
    def coordinate_names(self) -> list[str]:
        """``"tau"``, ``"theta[3]"``, ``"L[1,0]"``: one name per flat coordinate (see :attr:`coordinates`)."""
        return [f"{site}[{','.join(map(str, i))}]" if i else site for site, i in self.coordinates]

    # ------------------------------------------------------------------ spaces
    def constrain(self, x: jax.Array, deterministic: bool = False) -> dict[str, jax.Array]:
        """Flat unconstrained ``x`` of shape ``(..., d)`` -> ``{site: (..., *shape)}`` in the model's space;
        with ``deterministic`` also the model's deterministic sites."""
        return self._constrain_rows(x if isinstance(x, jax.Array) else np.asarray(x), deterministic)

    @partial(jax.jit, static_argnums=(0, 2))
    def _constrain_rows(self, x, deterministic):
        values = jax.vmap(lambda z: self.constrain_sites(self.unravel(z), deterministic))(x.reshape(-1, self.dim))
        return {k: v.reshape(x.shape[:-1] + v.shape[1:]) for k, v in values.items()}

    @partial(jax.jit, static_argnums=0)
    def _unconstrain_rows(self, latent):
        """Constrained ``{site: (n, *shape)}`` -> the unconstrained ``{site: (n, ...)}`` and flat ``(n, d)``."""
        unconstrained = jax.vmap(self.unconstrain_sites)(latent)
        by_site = dict(zip(self.unconstrained_shapes, jax.tree_util.tree_leaves(unconstrained)))
        return by_site, jax.vmap(lambda v: ravel_pytree(v)[0])(unconstrained)

    def unconstrain(self, samples: dict, num_sample_axes: int | None = None) -> jax.Array:
        """Constrained ``{site: (..., *shape)}`` -> flat unconstrained ``(..., d)``.

        Sites the model computes (deterministic or observed) are ignored; every latent site must
        be present with the model's shape after the same leading sample axes (``num_sample_axes``
        of them when given), real-valued (integer draws are cast to float), finite, non-empty, and
        inside its support (its unconstrained value finite): see :mod:`numpyro_stein_diag.validation`.
        """
        latent, batch_shape = self.validate_samples(samples, num_sample_axes)
        rows = {k: v.reshape((-1,) + self.site_shapes[k]) for k, v in latent.items()}
        unconstrained, flat = self._unconstrain_rows(rows)
        check_supports(rows, unconstrained, batch_shape, self.site_supports)
        return jnp.asarray(np.asarray(flat).reshape(batch_shape + (self.dim,)))

    def validate_samples(self, samples: dict, num_sample_axes: int | None = None) -> tuple[dict, tuple[int, ...]]:
        """Check a constrained sample dict against the model (:func:`~numpyro_stein_diag.validation.validate_samples`);
        return its latent sites as float arrays and its sample axes."""
        return validate_samples(samples, self.site_shapes, self.extra_sites, num_sample_axes)


@lru_cache(maxsize=TARGET_CACHE_SIZE)
def _model_target(call: ModelCall) -> Target:
    """The Target of ``call`` (:meth:`Target.from_model`), kept for the next equal call."""
    trace, prior_can_be_sampled = _trace_once(call)
    latent = _latent_sites(trace)
    check_latent_sites(latent)
    model, args, kwargs = call.model, call.args, call.kwargs
    with (
        model_errors(
            "Target.from_model was building the target (numpyro's initialize_model: the log "
            "density at random initial points)"
        ),
        finite_initial_point(),
    ):
        info = initialize_model(call.rng_key, model, model_args=args, model_kwargs=kwargs)

    def constrain_sites(params, deterministic=False):
        return constrain_fn(model, args, kwargs, params, return_deterministic=deterministic)

    def unconstrain_sites(values):
        return unconstrain_fn(model, args, kwargs, values)

    def sample_prior(rng_key, n):
        draws = Predictive(model, num_samples=n, return_sites=sorted(latent))(rng_key, *args, **kwargs)
        return {name: draws[name] for name in latent}

    supports = {name: site["fn"].support for name, site in latent.items()}
    return Target(
        kind="model",
        potential_fn=info.potential_fn,
        init_params=info.param_info.z,
        site_shapes={name: tuple(jnp.shape(site["value"])) for name, site in latent.items()},
        site_supports=supports,
        extra_sites=frozenset(name for name, site in trace.items() if site["type"] in ("sample", "deterministic"))
        - set(latent),
        constrain_sites=constrain_sites,
        unconstrain_sites=unconstrain_sites,
        initial_points=(
            _prior_points(sample_prior, unconstrain_sites, supports)
            if prior_can_be_sampled
            else _uniform_box(ravel_pytree(info.param_info.z)[0].size)
        ),
        model_call=call,
    )


def _trace_once(call: ModelCall) -> tuple[dict, bool]:
    """One run of the model with prior draws, and whether its prior can be sampled: where a site
    cannot be (an ``ImproperUniform``), the trace takes numpyro's ``init_to_uniform`` values."""
    tracer = handlers.trace(handlers.seed(call.model, call.rng_key))

    def values_so_far():
        return {name: site["value"] for name, site in _latent_sites(getattr(tracer, "trace", {})).items()}

    with model_errors(
        "Target.from_model was building the target (running the model once with prior draws)", values_so_far
    ):
        try:
            return tracer.get_trace(*call.args, **call.kwargs), True
        except NotImplementedError:
            seeded = handlers.substitute(handlers.seed(call.model, call.rng_key), substitute_fn=init_to_uniform)
            tracer = handlers.trace(seeded)
            return tracer.get_trace(*call.args, **call.kwargs), False


def _latent_sites(trace) -> dict:
    """``{name: site}`` of the latent sample sites of a (possibly partial) numpyro trace."""
    return {name: site for name, site in trace.items() if site["type"] == "sample" and not site["is_observed"]}


PRIOR_BLOCK = 256  # prior draws per compiled call: one compilation for every number of draws


def _prior_points(sample_prior, unconstrain_sites, supports) -> Callable[[jax.Array, int], np.ndarray]:
    """``(rng_key, n) -> (n, d)``: ``n`` prior draws mapped to unconstrained space, numpyro's
    Predictive and the transforms compiled as one program that draws ``PRIOR_BLOCK`` at a time
    (block ``i`` from ``fold_in(rng_key, i)``; the search wants 32 and 8192 draws, NUTS one per
    chain, and each size would be a compilation of its own); a draw on its support's edge (not
    finite once unconstrained) is refused, naming its site."""

    @jax.jit
    def draw(rng_key):
        values = sample_prior(rng_key, PRIOR_BLOCK)
        unconstrained = jax.vmap(unconstrain_sites)(values)
        return values, unconstrained, jax.vmap(lambda v: ravel_pytree(v)[0])(unconstrained)

    def prior_points(rng_key, n):
        blocks = [draw(jax.random.fold_in(rng_key, i)) for i in range(max(1, -(-n // PRIOR_BLOCK)))]
        values, unconstrained, points = jax.tree.map(lambda *b: np.concatenate(b)[:n], *blocks)
        check_supports(values, unconstrained, (n,), supports)
        return points

    return prior_points


def _uniform_box(dim: int) -> Callable[[jax.Array, int], jax.Array]:
    """``(rng_key, n) -> (n, d)`` drawn from ``Uniform(-2, 2)^d``, as numpyro's ``init_to_uniform``."""
    return lambda rng_key, n: jax.random.uniform(rng_key, (n, dim), minval=-2.0, maxval=2.0)


def _jitter_around(center: jax.Array, scale: float) -> Callable[[jax.Array, int], jax.Array]:
    """``(rng_key, n) -> (n, d)`` drawn from ``N(center, scale^2 I)``."""
    return lambda rng_key, n: center + scale * jax.random.normal(rng_key, (n,) + center.shape, center.dtype)


def _fingerprint(value):
    """A hashable stand-in for a model and its arguments: arrays (PRNG keys by their key data) by
    shape, dtype and a digest of their bytes, other leaves by value, or by identity when they
    cannot be hashed."""
    leaves, treedef = jax.tree_util.tree_flatten(value)
    parts = []
    for leaf in leaves:
        if isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        if isinstance(leaf, np.ndarray | jax.Array | np.generic):
            array = np.asarray(leaf)
            parts.append((array.shape, str(array.dtype), hashlib.sha1(array.tobytes()).hexdigest()))
        else:
            try:
                hash(leaf)
                parts.append(leaf)
            except TypeError:
                parts.append(("id", id(leaf)))
    return str(treedef), tuple(parts)


def _site_names(params) -> list[str]:
    """One site name per leaf of a potential's parameter pytree (see :meth:`Target.from_potential`)."""
    paths = [
        jax.tree_util.keystr(path, simple=True, separator=".")
        for path, _ in jax.tree_util.tree_leaves_with_path(params)
    ]
    if isinstance(params, dict):
        return paths
    return [f"x.{p}" if p else "x" for p in paths]
