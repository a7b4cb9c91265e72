"""NUTS through numpyro.infer.MCMC, returned as a :class:`~numpyro_stein_diag.runs.Run`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from numpyro.infer import MCMC, NUTS

from .host import split_keys
from .runs import Run
from .target import Target

__all__ = ["nuts"]

# what arviz_base.from_numpyro needs for a full sample_stats group
NUTS_EXTRA_FIELDS = ("potential_energy", "energy", "diverging", "num_steps", "accept_prob", "mean_accept_prob")


def nuts(
    model_or_target,
    rng_key,
    *model_args,
    num_chains: int = 4,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    chain_method: str | None = None,
    progress_bar: bool = True,
    init_spread: bool = True,
    **model_kwargs,
) -> Run:
    """Run ``num_chains`` NUTS chains; the MCMC object is kept for ``arviz_base.from_numpyro``.

    ``model_or_target`` is a NumPyro model (its ``model_args``/``model_kwargs`` follow, as in
    ``MCMC.run``: ``nuts(model, key, y, num_chains=4)``) or a :class:`Target` (a model target
    runs its own model; a potential target runs NUTS on its potential). Chains start from over-dispersed prior draws
    (``target.initial_points``) when ``init_spread``, so they have a chance to land in
    different modes. ``chain_method`` defaults to ``"parallel"`` when there are as many
    devices as chains, else ``"sequential"`` (``"vectorized"`` is also accepted).
    """
    if isinstance(model_or_target, Target):
        target = model_or_target
        if model_args or model_kwargs:
            raise TypeError("model arguments belong to Target.from_model, not to nuts(target, ...).")
    else:
        target = Target.from_model(model_or_target, *model_args, **model_kwargs)
    if chain_method is None:
        chain_method = "parallel" if jax.local_device_count() >= num_chains else "sequential"
    k_init, k_run = split_keys(rng_key)
    if target.kind == "model":
        call = target.model_call
        kernel, run_args, run_kwargs = NUTS(call.model), call.args, call.kwargs
    else:
        kernel, run_args, run_kwargs = NUTS(potential_fn=target.potential_fn), (), {}
    mcmc = MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method=chain_method,
        progress_bar=progress_bar,
    )
    init_params = _chain_starts(target, k_init, num_chains, init_spread)
    mcmc.run(
        k_run,
        *run_args,
        init_params=init_params,
        extra_fields=NUTS_EXTRA_FIELDS,
        **run_kwargs,
    )
    if target.kind == "model":
        samples = {k: v for k, v in mcmc.get_samples(group_by_chain=True).items() if k in target.site_shapes}
        draws = target.unconstrain(samples)
    else:
        flat = jax.vmap(jax.vmap(lambda p: jax.flatten_util.ravel_pytree(p)[0]))
        draws = flat(mcmc.get_samples(group_by_chain=True))
        samples = target.constrain(draws)
    return Run(method="nuts", draws=draws, samples=samples, mcmc=mcmc, independent=False)


def _chain_starts(target: Target, rng_key, num_chains: int, spread: bool):
    """One unconstrained start per chain (a batch axis only when ``num_chains > 1``, as MCMC wants):
    over-dispersed ``target.initial_points`` when ``spread``, else the target's own initial point
    for a potential (a model's chains then start from numpyro's init strategy, ``None``)."""
    if spread:
        starts = jax.vmap(target.unravel)(target.initial_points(rng_key, num_chains))
    elif target.kind == "potential":
        starts = jax.tree_util.tree_map(lambda v: jnp.broadcast_to(v, (num_chains,) + jnp.shape(v)), target.init_params)
    else:
        return None
    return starts if num_chains > 1 else jax.tree_util.tree_map(lambda v: v[0], starts)
