"""A NumPyro model, or a raw potential, as a flat log density on unconstrained R^d.

Everything else in the package works on one object, :class:`Target`:

.. math::

    \\log \\pi(x) = \\log p(T(x) \\mid \\text{data}) + \\log |\\det J_T(x)|, \\qquad x \\in \\mathbb{R}^d,

where ``T`` maps unconstrained to constrained values site by site. Because the
log-Jacobian is included, a region of R^d holds the same posterior mass as its
image in the model's space: mode masses estimated here are the model's masses.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.infer import init_to_uniform
from numpyro.infer.util import Predictive, constrain_fn, initialize_model, unconstrain_fn

from .validation import (
    check_example_params, check_latent_sites, check_potential_value, check_supports, finite_initial_point,
    model_errors, validate_samples,
)

__all__ = ["Target"]


@dataclass(frozen=True, eq=False)
class Target:
    """A posterior as a flat, unconstrained log density (hashable, so usable as a static jit argument).

    Build it with :meth:`from_model` or :meth:`from_potential`; do not call the constructor.

    Attributes
    ----------
    dim : int
        Dimension ``d`` of the flat unconstrained space.
    site_shapes : dict
        ``{site: shape}`` of every latent site in the model's (constrained) space.
    """

    potential_fn: Callable[[Any], jax.Array]  # unconstrained pytree -> -log density
    unravel: Callable[[jax.Array], Any]  # flat (d,) -> unconstrained pytree
    dim: int
    site_shapes: dict[str, tuple[int, ...]]
    constrain_sites: Callable[..., dict]  # unconstrained {site: value}, deterministic -> constrained
    unconstrain_sites: Callable[[dict], dict]  # constrained {site: value} -> unconstrained
    sample_prior: Callable[[jax.Array, int], dict] | None  # key, n -> constrained {site: (n, ...)}
    init_params: Any  # an unconstrained pytree where the log density is finite
    init_scale: float = 1.0  # jitter of initial_points when there is no prior
    extra_sites: frozenset[str] = frozenset()  # deterministic / observed sites a sample may carry
    site_supports: dict = field(default_factory=dict)  # {site: numpyro constraint} of a model's latent sites
    model: Callable | None = None
    model_args: tuple = ()
    model_kwargs: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_model(cls, model: Callable, *model_args, rng_key=None, **model_kwargs) -> "Target":
        """The posterior of a NumPyro ``model(*model_args, **model_kwargs)``.

        Built on :func:`numpyro.infer.util.initialize_model`, whose ``potential_fn``
        includes the log-Jacobian of the constraining transforms. The same model with equal
        arguments (arrays compared by shape, dtype and bytes) gives back the same Target, so
        everything compiled for it (ascents, curvature, scores, SVGD steps, all keyed by the
        Target) is reused by a second :func:`~numpyro_stein_diag.diagnose` call; the last
        ``TARGET_CACHE_SIZE`` are kept. As with :func:`jax.jit`, a model that reads data from
        global variables rather than its arguments is not rebuilt when they change: call
        :meth:`clear_cache` then.

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
        key = (_fingerprint(model), _fingerprint((model_args, model_kwargs)), _fingerprint(rng_key))
        if key in _TARGETS:
            return _TARGETS[key]
        _TARGETS[key] = target = cls._build_from_model(model, model_args, model_kwargs, rng_key)
        while len(_TARGETS) > TARGET_CACHE_SIZE:
            del _TARGETS[next(iter(_TARGETS))]  # the oldest
        return target

    @staticmethod
    def clear_cache() -> None:
        """Forget the Targets :meth:`from_model` keeps (and so what was compiled for them)."""
        _TARGETS.clear()

    @classmethod
    def _build_from_model(cls, model, model_args, model_kwargs, rng_key) -> "Target":
        tracer = handlers.trace(handlers.seed(model, rng_key))
        with model_errors("Target.from_model was building the target (running the model once with prior draws)",
                          lambda: _latent_values(getattr(tracer, "trace", {}))):
            try:
                trace = tracer.get_trace(*model_args, **model_kwargs)
                prior_can_be_sampled = True
            except NotImplementedError:  # a site that cannot be sampled (ImproperUniform): numpyro's init values
                seeded = handlers.substitute(handlers.seed(model, rng_key), substitute_fn=init_to_uniform)
                tracer = handlers.trace(seeded)
                trace = tracer.get_trace(*model_args, **model_kwargs)
                prior_can_be_sampled = False
        latent = {
            name: site
            for name, site in trace.items()
            if site["type"] == "sample" and not site["is_observed"]
        }
        check_latent_sites(latent)
        with (model_errors("Target.from_model was building the target (numpyro's initialize_model: the log "
                           "density at random initial points)"), finite_initial_point()):
            info = initialize_model(rng_key, model, model_args=model_args, model_kwargs=model_kwargs)
        init_params = info.param_info.z
        flat, unravel = ravel_pytree(init_params)
        site_shapes = {name: tuple(jnp.shape(site["value"])) for name, site in latent.items()}
        extra = frozenset(
            name for name, site in trace.items() if site["type"] in ("sample", "deterministic")
        ) - set(latent)

        def constrain_sites(params, deterministic=False):
            return constrain_fn(model, model_args, model_kwargs, params, return_deterministic=deterministic)

        def unconstrain_sites(values):
            return unconstrain_fn(model, model_args, model_kwargs, values)

        def sample_prior(key, n):
            draws = Predictive(model, num_samples=n, return_sites=sorted(latent))(
                key, *model_args, **model_kwargs
            )
            return {name: draws[name] for name in latent}

        return cls(
            potential_fn=info.potential_fn,
            unravel=unravel,
            dim=flat.shape[0],
            site_shapes=site_shapes,
            constrain_sites=constrain_sites,
            unconstrain_sites=unconstrain_sites,
            sample_prior=sample_prior if prior_can_be_sampled else None,
            init_params=init_params,
            extra_sites=extra,
            site_supports={name: site["fn"].support for name, site in latent.items()},
            model=model,
            model_args=model_args,
            model_kwargs=dict(model_kwargs),
        )

    @classmethod
    def from_potential(
        cls, potential_fn: Callable[[Any], jax.Array], example_params: Any, init_scale: float = 1.0
    ) -> "Target":
        """A target given by its potential ``U(params) = -log p(params)`` on an unconstrained pytree.

        ``example_params`` fixes the structure and is the centre of :meth:`initial_points`,
        which adds ``N(0, init_scale^2 I)`` jitter. Each array leaf is one site, named by
        its path: a dict ``{"a": ..., "b": ...}`` gives sites ``a`` and ``b`` (nested keys
        joined by dots), a single array is the site ``x``, and any other pytree's leaves are
        ``x.0``, ``x.1``, ... (a tuple ``(mu, {"s": ...})`` gives ``x.0`` and ``x.1.s``).
        """
        check_example_params(example_params)
        params = jax.tree_util.tree_map(jnp.asarray, example_params)
        names = _site_names(params)
        treedef = jax.tree_util.tree_structure(params)
        flat, unravel = ravel_pytree(params)

        def to_sites(p, deterministic=False):  # a potential has no deterministic sites
            return dict(zip(names, jax.tree_util.tree_leaves(p)))

        with model_errors("Target.from_potential was building the target (evaluating potential_fn at "
                          "example_params)", lambda: to_sites(params)):
            check_potential_value(potential_fn(params))

        def from_sites(values):
            return jax.tree_util.tree_unflatten(treedef, [values[name] for name in names])

        site_shapes = {k: tuple(jnp.shape(v)) for k, v in to_sites(params).items()}
        return cls(
            potential_fn=potential_fn,
            unravel=unravel,
            dim=flat.shape[0],
            site_shapes=site_shapes,
            constrain_sites=to_sites,
            unconstrain_sites=from_sites,
            sample_prior=None,
            init_params=params,
            init_scale=float(init_scale),
        )

    # ------------------------------------------------------------------ densities
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
        return unconstrained, jax.vmap(lambda v: ravel_pytree(v)[0])(unconstrained)

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

    def initial_points(self, rng_key: jax.Array, n: int) -> jax.Array:
        """``n`` over-dispersed starting points ``(n, d)``: prior draws mapped to unconstrained space.

        For a model whose prior cannot be sampled (an ``ImproperUniform`` site whose density is
        given by ``numpyro.factor``): ``Uniform(-2, 2)`` in every unconstrained coordinate, as
        numpyro's ``init_to_uniform`` starts its chains. For a potential: the example parameters
        plus ``N(0, init_scale^2 I)``.
        """
        if self.sample_prior is None and self.model is not None:
            return jax.random.uniform(rng_key, (n, self.dim), minval=-2.0, maxval=2.0)
        if self.sample_prior is None:
            x0 = ravel_pytree(self.init_params)[0]
            return x0 + self.init_scale * jax.random.normal(rng_key, (n, self.dim), x0.dtype)
        points = self._prior_points(rng_key, n)
        if not np.all(np.isfinite(np.asarray(points))):  # a draw on its support's edge: say which site
            return self.unconstrain(self.sample_prior(rng_key, n))
        return points

    @partial(jax.jit, static_argnums=(0, 2))
    def _prior_points(self, rng_key, n):
        """``n`` prior draws, unconstrained and flat: numpyro's Predictive compiled as one program."""
        return self._unconstrain_rows(self.sample_prior(rng_key, n))[1]


TARGET_CACHE_SIZE = 16
_TARGETS: dict = {}  # (model, arguments, key) fingerprint -> Target, oldest first


def _fingerprint(value):
    """A hashable stand-in for a model or its arguments: arrays by shape, dtype and a digest of
    their bytes, other leaves by value, or by identity when they cannot be hashed."""
    leaves, treedef = jax.tree_util.tree_flatten(value)
    parts = []
    for leaf in leaves:
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


def _latent_values(trace) -> dict:
    """``{site: value}`` of the latent sample sites of a (possibly partial) numpyro trace."""
    return {name: site["value"] for name, site in trace.items()
            if site["type"] == "sample" and not site["is_observed"]}

