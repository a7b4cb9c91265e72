"""Models and draws the test files share (``from helpers import ...``; tests/ is on pytest's pythonpath).

The demo's model is defined here again, not imported from ``numpyro_stein_diag.demo``: the tests
of every other module must not change when the demo does.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import xarray as xr

import numpyro_stein_diag as nsd
from numpyro_stein_diag.modes import _make_modes, curvature


def two_mode_model(separation: float = 4.0, weight_left: float = 0.5):
    """``x ~ w N(-separation, 1) + (1 - w) N(separation, 1)``."""
    mixing = dist.Categorical(probs=np.array([weight_left, 1.0 - weight_left]))
    components = dist.Normal(np.array([-separation, separation]), 1.0)
    numpyro.sample("x", dist.MixtureSameFamily(mixing, components))


def mixture_draws(rng, weight_left, shape):
    """Exact draws of :func:`two_mode_model` (separation 4): ``w N(-4, 1) + (1 - w) N(4, 1)``."""
    return np.where(rng.random(shape) < weight_left, -4.0, 4.0) + rng.normal(size=shape)


def funnel(dim=10):
    """Neal's funnel: ``v ~ N(0, 3^2)``, ``x_i ~ N(0, e^v)``; the density peaks at ``x = 0``,
    ``v = -4.5 (dim - 1)`` (argmax of ``-v^2 / 18 - (dim - 1) v / 2``), where ``x``'s curvature is ``e^{-v}``."""
    v = numpyro.sample("v", dist.Normal(0, 3))
    numpyro.sample("x", dist.Normal(0, jnp.exp(v / 2)).expand([dim - 1]))


def gaussian(c=0.0, s=1.0, dim=2):
    """``N(c 1, s^2 I)`` in ``dim`` dimensions as a potential, ``0.5 ||(z - c) / s||^2``, started at ``c 1``."""
    return nsd.Target.from_potential(lambda z: 0.5 * jnp.sum(((z - c) / s) ** 2), jnp.full(dim, c))


def ar1(rng, centre, shape, rho=0.5):
    """Draws that stay around ``centre`` with AR(1) autocorrelation ``rho`` along the last axis."""
    eps = rng.normal(size=shape)
    x = np.empty(shape)
    x[..., 0] = eps[..., 0]
    for t in range(1, shape[-1]):
        x[..., t] = rho * x[..., t - 1] + np.sqrt(1 - rho**2) * eps[..., t]
    return centre + x


def sojourns(rng, *pieces):
    """One chain made of ``(centre, length)`` pieces: a chain that crosses between them rarely."""
    return np.concatenate([ar1(rng, c, (n,)) for c, n in pieces])


MODE_FLAGS = {"missed_mode", "misweighted_mode"}


def kinds(report, method):
    """The kinds of the flags a report raised on ``method``."""
    return {f.kind for f in report.flags if f.method == method}


def mode_kinds(report, method):
    """The kinds of ``method``'s flags that are about a mode (missed or misweighted)."""
    return kinds(report, method) & MODE_FLAGS


def nsd_posterior(sites: dict) -> xr.Dataset:
    """``{site: (chain, draw, ...) array}`` as an ArviZ posterior group."""
    import arviz_base

    return arviz_base.from_dict({"posterior": sites})["posterior"].dataset


def modes_and_masses(target, seed=0, **kwargs):
    """``(modes, masses)`` of ``target``: modes searched with key ``seed``, masses estimated with key ``seed + 1``."""
    modes = nsd.find_modes(target, None, jax.random.PRNGKey(seed), **kwargs)
    return modes, nsd.mode_masses(target, modes, jax.random.PRNGKey(seed + 1))


def t_mixture(d, nu=5.0, weights=(0.3, 0.7)):
    """0.3 N(-15 e1, I) + 0.7 t_nu(15 e1, I) in ``d`` dimensions: its target, its modes (built at the
    known locations, so the masses are tested apart from the search), exact draws ``draws(seed, n)``
    and the masses (the components' weights: the other component's tail beyond the basin boundary
    holds below 1e-5)."""
    left, right = np.eye(d)[0] * -15.0, np.eye(d)[0] * 15.0
    weights = np.array(weights)

    def potential(x):
        normal = dist.Normal(left, 1.0).to_event(1).log_prob(x)
        t = dist.MultivariateStudentT(nu, right, jnp.eye(d)).log_prob(x)
        return -jnp.logaddexp(jnp.log(weights[0]) + normal, jnp.log(weights[1]) + t)

    def draws(seed, n):
        rng = np.random.default_rng(seed)
        normal = rng.random(n) < weights[0]
        z = rng.standard_normal((n, d))
        return np.where(normal[:, None], left + z, right + z / np.sqrt(rng.chisquare(nu, n) / nu)[:, None])

    return two_known_modes(potential, d, left, right), draws, weights


def two_known_modes(potential, d, left, right):
    target = nsd.Target.from_potential(potential, jnp.zeros(d))
    location = np.stack([left, right])
    log_p, _, hessian = curvature(target, location)
    return target, _make_modes(target, location, log_p, hessian)
