"""Checks of what users pass in: a model's sites, a potential's example parameters, samples
against a model's sites, and errors raised by the model itself.

Every check is a pure function that raises :class:`InputError` with one line naming the site,
what the model expects, what was given, and the fix. :class:`~numpyro_stein_diag.target.Target`
and :func:`~numpyro_stein_diag.diagnose.run_from_samples` call them; valid input passes unchanged
(integer draws of a continuous site are cast to float, see :func:`as_float_draws`).

Rules for ``(chain, draw)`` samples, checked by :func:`check_chain_draw_axes`:

- at least ``MIN_DRAWS = 2`` draws in all: the KSD test is a U-statistic over pairs of draws;
- for arrays whose axes are positional (a dict), no more chains than draws per chain unless the
  draws are declared independent: ``(100, 2)`` read as 100 chains of 2 draws is almost always
  100 draws of 2 chains given as ``(draw, chain)`` (ArviZ warns on the same rule). Samples whose
  axes are named (an MCMC object, a DataTree with ``chain`` and ``draw`` dimensions) are taken as
  they say, so many short chains can be passed that way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "InputError",
    "ModelError",
    "MIN_DRAWS",
    "as_float_draws",
    "check_chain_draw_axes",
    "check_example_params",
    "check_finite",
    "check_independent_names",
    "check_latent_sites",
    "check_potential_value",
    "check_site_names",
    "check_supports",
    "finite_initial_point",
    "first_draw",
    "model_errors",
    "sample_axes",
    "validate_samples",
]

MIN_DRAWS = 2  # the KSD is a mean over pairs of distinct draws


class InputError(ValueError):
    """Input that does not fit the model; the message names the problem and the fix."""


class ModelError(RuntimeError):
    """An error raised inside the user's model (or potential), with what was being done when it was
    raised and the site values it was evaluated at; the original error is its ``__cause__``."""


def check_latent_sites(latent: dict) -> None:
    """A model's latent sites (``{name: numpyro trace site}``) are at least one, and each is
    continuous or enumerated (so that numpyro sums it out)."""
    if not latent:
        raise InputError("The model has no latent sample sites: there is no posterior to check.")
    for name, site in latent.items():
        if site["fn"].support.is_discrete and site["infer"].get("enumerate") != "parallel":
            raise InputError(
                f"latent site '{name}' has a discrete distribution ({type(site['fn']).__name__}); "
                "score-based diagnostics need a continuous, differentiable density. Marginalise it "
                "out in the model, or mark it with infer={'enumerate': 'parallel'} (needs funsor) "
                "so numpyro sums it out."
            )


@contextmanager
def finite_initial_point() -> Iterator[None]:
    """Run numpyro's ``initialize_model`` in the body; the ``RuntimeError`` it raises when the log
    density is not finite at any initial point it tried becomes :class:`InputError` with the fix."""
    try:
        yield
    except RuntimeError as err:
        raise InputError(
            "The model's log density is not finite at any initial point tried "
            f"({err}). Check priors and likelihood for NaN/inf (e.g. a scale that can be 0, "
            "log of a negative value), or pass data that the model supports."
        ) from err


def check_example_params(example_params) -> None:
    """A potential's ``example_params`` hold at least one array, all of them float."""
    leaves = jax.tree_util.tree_leaves_with_path(example_params)
    if not leaves:
        raise InputError("example_params is empty: pass an array or a pytree of float arrays.")
    for path, leaf in leaves:
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise InputError(
                f"example_params leaf {jax.tree_util.keystr(path) or 'x'} has dtype {dtype}; a log density "
                "needs float parameters. Cast it, e.g. jnp.asarray(value, dtype=float)."
            )


def check_potential_value(value) -> None:
    """``potential_fn(example_params)`` is one finite number."""
    if np.shape(value) != ():
        raise InputError(
            f"potential_fn(example_params) has shape {np.shape(value)}; a potential returns one number, "
            "-log p(params): sum over the terms (e.g. jnp.sum(...))."
        )
    if not np.isfinite(value):
        raise InputError(
            f"potential_fn(example_params) = {value}: the log density must be finite at "
            "example_params. Pass a point inside the support."
        )


def check_site_names(samples, site_shapes: dict, extra_sites=frozenset()) -> None:
    """``samples`` is a dict holding every latent site of ``site_shapes`` and no site the model
    does not have (``extra_sites``: deterministic or observed sites, which a sample may carry)."""
    if not isinstance(samples, dict):
        raise TypeError(f"samples must be a dict {{site: array}}, got {type(samples).__name__}.")
    missing = sorted(set(site_shapes) - set(samples))
    unknown = sorted(set(samples) - set(site_shapes) - set(extra_sites))
    if missing or unknown:
        raise InputError(
            f"samples do not match the model's latent sites {sorted(site_shapes)}: "
            + "; ".join(([f"missing {missing}"] if missing else []) + ([f"unknown {unknown}"] if unknown else []))
            + ". Pass one array per latent site, named as in the model."
        )


def as_float_draws(name: str, value) -> np.ndarray:
    """Draws of the continuous site ``name`` as a float array.

    Integer draws (a continuous site's values saved as whole numbers, ``np.arange``) are cast to
    JAX's default float dtype (float32 unless ``jax_enable_x64``), exact up to 2^24 in float32;
    floats pass unchanged. Anything else (bool, complex, strings, objects) is refused: it cannot
    be a draw of a real-valued site.
    """
    value = np.asarray(value)
    if np.issubdtype(value.dtype, np.floating):
        return value
    if np.issubdtype(value.dtype, np.integer):
        return value.astype(jax.dtypes.canonicalize_dtype(np.float64))
    raise InputError(
        f"site '{name}' has dtype {value.dtype}; the model's site '{name}' is continuous, so it needs "
        "real numbers: pass float draws (e.g. np.asarray(x, dtype=float))."
    )


def sample_axes(samples: dict, site_shapes: dict, num_sample_axes: int | None = None) -> tuple[int, ...]:
    """The leading sample axes every site of ``samples`` shares (``(chain, draw)``, ``(n,)``, ...).

    Each site must have shape ``sample_axes + site_shapes[site]``, with ``num_sample_axes``
    sample axes when given (at least one otherwise). Sites are judged one by one, so a wrong shape
    is reported for the site that has it. When the sites' sample axes disagree, the axes most
    sites share are taken as right (on a tie, the shorter: a scalar site given a stray trailing
    axis is the common mistake) and the first site that differs is named.
    """
    axes = {
        name: _site_sample_axes(name, np.shape(samples[name]), shape, num_sample_axes)
        for name, shape in site_shapes.items()
    }
    sites_by_axes: dict[tuple, list[str]] = {}
    for name, site_axes in axes.items():
        sites_by_axes.setdefault(site_axes, []).append(name)
    common = max(sites_by_axes, key=lambda a: (len(sites_by_axes[a]), -len(a)))
    odd = next((name for name, site_axes in axes.items() if site_axes != common), None)
    if odd is not None:
        raise InputError(
            f"site '{odd}' has sample axes {axes[odd]} (shape {np.shape(samples[odd])}, the model's site "
            f"shape {site_shapes[odd]}) but site(s) {sites_by_axes[common]} have {common}; every site "
            "needs the same (chain, draw) axes: check how this site was saved or reshaped."
        )
    return common


def _site_sample_axes(name: str, given: tuple, shape: tuple, num_sample_axes: int | None) -> tuple:
    """The leading axes of one site's array ``given`` before the model's site ``shape``."""
    nb = len(given) - len(shape)
    if given[nb:] == shape and (nb == num_sample_axes or (num_sample_axes is None and nb >= 1)):
        return tuple(given[:nb])
    leading = "(chain, draw" if num_sample_axes == 2 else "(..."
    expected = leading + "".join(f", {n}" for n in shape) + ")"
    if given[max(nb, 0) :] != shape:
        fix = f"its trailing axes must be the site's shape {shape}"
    elif nb < (num_sample_axes or 1):
        fix = (
            "add a chain axis to pass (chain, draw, ...) arrays, e.g. x[None] for one chain"
            if num_sample_axes == 2
            else "add a leading sample axis, e.g. x[None]"
        )
    else:
        fix = f"it has {nb} leading axes: merge or drop the extra ones"
    raise InputError(
        f"site '{name}' has shape {tuple(given)}; the model's site '{name}' has shape {shape}, so it needs "
        f"shape {expected}: {fix}."
    )


def check_finite(name: str, value: np.ndarray) -> None:
    """The draws of site ``name`` are not empty and hold no NaN or inf."""
    if value.size == 0:
        raise InputError(f"site '{name}' is empty (shape {value.shape}): pass at least one draw.")
    bad = ~np.isfinite(value)
    if bad.any():
        raise InputError(
            f"site '{name}' has {int(bad.sum())} non-finite values (NaN or inf) in {value.size}; "
            "drop or fix those draws before checking."
        )


def validate_samples(
    samples, site_shapes: dict, extra_sites=frozenset(), num_sample_axes: int | None = None
) -> tuple[dict[str, np.ndarray], tuple[int, ...]]:
    """Every check above, in order: names, dtypes, shapes, emptiness, NaN.

    Returns the latent sites as float arrays ``{site: sample_axes + shape}`` and the sample axes.
    """
    check_site_names(samples, site_shapes, extra_sites)
    latent = {name: as_float_draws(name, samples[name]) for name in site_shapes}
    axes = sample_axes(latent, site_shapes, num_sample_axes)
    for name, value in latent.items():
        check_finite(name, value)
    return latent, axes


def check_supports(values: dict, unconstrained: dict, batch_shape, supports: dict) -> None:
    """Raise when draws ``values[site] (n, ...)`` of a model's site lie outside ``supports[site]``
    (their ``unconstrained`` value is not finite), naming the site and the support. Judged through
    the transform rather than the support's own check, so float32 round-off (a simplex summing to
    1 + 1e-6) passes where a draw the density cannot take (a negative scale) does not."""
    for name, support in supports.items():
        inside = np.isfinite(np.asarray(unconstrained[name]).reshape(len(unconstrained[name]), -1)).all(axis=1)
        if inside.all():
            continue
        first = int(np.argmin(inside))
        example = np.array2string(np.asarray(values[name][first]), precision=3, threshold=6)
        where = tuple(map(int, np.unravel_index(first, batch_shape)))
        raise InputError(
            f"site '{name}' has {int((~inside).sum())} of {inside.size} draws outside its support "
            f"{support!r} (the first at sample index {where}: {example}); these samples are not from this "
            "model: check the site's name, its parametrisation (e.g. a scale saved as its log) and the "
            "model's arguments."
        )


def check_chain_draw_axes(
    batch_shape: tuple[int, ...], name: str, site: str, site_shape: tuple, independent: bool, axes_named: bool
) -> None:
    """The rules of the module docstring for sample ``name`` with sample axes ``(chain, draw)``;
    ``site`` and its model shape ``site_shape`` name one site in the message."""
    chains, draws = batch_shape
    given = tuple(batch_shape) + tuple(site_shape)
    if chains * draws < MIN_DRAWS:
        raise InputError(
            f"{chains * draws} draw (site '{site}' has shape {given}); the KSD test compares pairs of "
            f"draws, so pass at least {MIN_DRAWS}."
        )
    if chains > draws and not independent and not axes_named:
        raise InputError(
            f"{chains} chains of {draws} draws (site '{site}' has shape {given}, the model's site shape "
            f"{tuple(site_shape)}): more chains than draws, so the (chain, draw) axes look swapped. For "
            f"{draws} chains of {chains} draws pass np.swapaxes(x, 0, 1) for every site; for independent "
            f"draws pass diagnose(..., independent={{{name!r}}}); for {chains} short chains pass a "
            "DataTree whose posterior has (chain, draw) dims."
        )


def check_independent_names(independent, samples) -> frozenset[str]:
    """``diagnose(independent=...)`` as a set of sample names (one name may be given as a str);
    each must name one of ``samples``."""
    names = frozenset([independent] if isinstance(independent, str) else independent)
    unknown = sorted(names - set(samples))
    if unknown:
        raise InputError(
            f"independent names {unknown}, which are not in samples {sorted(samples)}; name samples you "
            "pass (the package's own methods already know whether their draws are independent)."
        )
    return names


@contextmanager
def model_errors(doing: str, values: Callable[[], dict] = dict) -> Iterator[None]:
    """Run the body; an error raised in it (by the user's model) is re-raised as :class:`ModelError`
    saying that ``doing`` was under way and at which site values (``values()``, shortened), with the
    original as ``__cause__``. :class:`InputError` (already a full message) passes unchanged."""
    try:
        yield
    except InputError:
        raise
    except Exception as err:
        first_line = (str(err).strip().splitlines() or [""])[0]
        at = _shorten(values())
        raise ModelError(
            f"the model raised {type(err).__name__} while {doing}"
            + (f", at site values {at}" if at else "")
            + f": {first_line} (the model's full error is this error's __cause__)."
        ) from err


def _shorten(values: dict, max_sites: int = 6) -> str:
    """``"mu=0.531, theta=[0.1 0.2 ... 0.9] (shape (10,))"``: a few sites, each with a few numbers."""
    parts = []
    for name, value in list(values.items())[:max_sites]:
        array = np.asarray(value)
        text = np.array2string(array, precision=3, threshold=6, edgeitems=2).replace("\n", "")
        parts.append(f"{name}={text}" + (f" (shape {array.shape})" if array.size > 6 else ""))
    more = len(values) - max_sites
    return ", ".join(parts) + (f" and {more} more site{'s' * (more != 1)}" if more > 0 else "")


def first_draw(latent: dict[str, np.ndarray], num_sample_axes: int) -> dict[str, np.ndarray]:
    """The first draw of each site of ``{site: sample_axes + shape}`` (for :func:`model_errors`)."""
    return {name: np.asarray(value)[(0,) * num_sample_axes] for name, value in latent.items()}
