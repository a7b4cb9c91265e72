"""ArviZ-style plots of a report: each builds (or reuses) a PlotCollection and returns it.

The functions take a :class:`~numpyro_stein_diag.report.Report` or ``{method: DataTree}``
with a ``stein_diagnostics`` group (what ``Report.to_datatrees()`` gives and what a saved
report loads back as), so a report plots the same before and after a round trip.
Each visual is one small function mapped over the PlotCollection, as in arviz-plots.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr
from arviz_base import rcParams
from arviz_plots import PlotCollection, plot_dist
from arviz_plots.visuals import backend_from_object, ci_line_y, labelled_title, scatter_xy

from .modes import mode_values_dataset

__all__ = ["plot_mode_mass", "plot_ksd", "plot_methods", "mode_mass_dataset", "ksd_dataset"]

FLAG_COLOR = "black"  # not a colour of the default method cycle, so a flag never reads as a method
SIDE_BY_SIDE = 0.15  # x offset of the expected mass (left) and the observed share (right) of a method


def _trees(dt) -> dict[str, xr.DataTree]:
    if hasattr(dt, "to_datatrees"):
        return dt.to_datatrees()
    if isinstance(dt, Mapping) and all("stein_diagnostics" in t.children for t in dt.values()):
        return dict(dt)
    raise TypeError(
        "pass a Report or {method: DataTree} whose trees have a 'stein_diagnostics' group "
        "(report.to_datatrees() gives that)."
    )


def _by_method(trees, names) -> xr.Dataset:
    diag = [trees[m]["stein_diagnostics"].dataset[names] for m in trees]
    return xr.concat(diag, dim="method", join="outer").assign_coords(method=list(trees))


def _with_axis(name, **parts) -> xr.Dataset:
    """One variable ``name`` stacking the DataArrays in ``parts`` along ``plot_axis``."""
    da = xr.concat(list(parts.values()), dim="plot_axis").assign_coords(plot_axis=list(parts))
    return da.to_dataset(name=name)


def _method_positions(table) -> xr.DataArray:
    """x position of each method: 0, 1, 2, ... along the ``method`` dim."""
    methods = table["method"].values
    return xr.DataArray(np.arange(len(methods), dtype=float), coords={"method": methods}, dims="method")


def _map_visual(pc, visuals, name, func, data, defaults=None, **map_kwargs):
    """``pc.map(func, name, ...)`` unless ``visuals[name]`` is False; user kwargs override defaults."""
    if visuals.get(name, True) is not False:
        pc.map(func, name, data=data, **map_kwargs, **{**(defaults or {}), **(visuals.get(name) or {})})


def mode_mass_dataset(dt) -> xr.Dataset:
    """``(method, mode)`` table: expected mass, its se, observed share, and whether it is flagged."""
    ds = _by_method(_trees(dt), ["expected_mass", "expected_mass_se", "observed_share", "missed", "misweighted"])
    return ds.assign(flagged=(ds["missed"] + ds["misweighted"]) > 0)


def ksd_dataset(dt) -> xr.Dataset:
    """``(method,)`` table of the KSD statistic and p-value of every test all methods hold:
    ``ksd``, ``ksd_pvalue`` (plain) and ``perturbed_ksd``, ``perturbed_ksd_pvalue``."""
    table = _by_method(_trees(dt), ["ksd", "ksd_pvalue"])
    prefix = {"plain": "", "perturbed": "perturbed_"}
    return xr.Dataset({
        f"{prefix[str(test)]}{name}": table[name].sel(test=test, drop=True)
        for test in table["test"].values if bool(table["ksd"].sel(test=test).notnull().all())
        for name in ("ksd", "ksd_pvalue")
    })


# ---------------------------------------------------------------------------- visuals
def _xticks(da, target, labels, **kwargs):
    return backend_from_object(target).xticks(np.arange(len(labels)), list(labels), target, **kwargs)


def _hline(da, target, value, **kwargs):
    return backend_from_object(target).hline(value, target, **kwargs)


def _vlines(da, target, **kwargs):
    """One vertical line per value of ``da`` (e.g. every mode of one parameter)."""
    plot_backend = backend_from_object(target)
    return [plot_backend.vline(float(v), target, **kwargs) for v in np.ravel(da.values)]


def _marks_like(posterior: xr.Dataset, mode_values: dict) -> xr.Dataset:
    """Mode locations ``{site: (K, ...)}`` on a ``mode`` dim, each site's other dims named (and
    labelled) as in ``posterior``, so a plated site's marks land on its panels."""
    marks = mode_values_dataset(mode_values)
    for site in marks.data_vars:
        names = {f"{site}_dim_{i}": dim for i, dim in enumerate(posterior[site].dims[2:])}
        marks = marks.rename({old: new for old, new in names.items() if old != new})
        marks = marks.assign_coords({d: posterior[d].values for d in names.values() if d in posterior.coords})
    return marks


def plot_mode_mass(
    dt,
    *,
    coords=None,
    num_se: float = 2.0,
    plot_collection=None,
    backend=None,
    visuals=None,
    **pc_kwargs,
):
    """Expected mass (``+- num_se`` standard errors) against the observed share, per mode and method.

    One panel per mode, titled by where the mode is (its site values, when they are few); in
    each, methods along x, and for each method side by side: the expected mass as an interval
    with a tick at its centre (left) and the observed share as a dot (right), with a black
    cross on flagged pairs (missed or misweighted; black is no method's colour). A method with
    chains is labelled with its moves between modes and basin R-hat, and "not mixing" when its
    shares were judged against the masses' se alone. The mass axis runs from 0 to 1. Visuals:
    ``expected``, ``expected_point``, ``observed``, ``flagged``, ``title``, ``xticks``,
    ``limits`` (each a mapping of kwargs, or False to skip). There is nothing to label
    or compute, so arviz-plots' ``labeller``, ``aes_by_visuals`` and ``stats`` are not taken.
    """
    visuals = dict(visuals or {})
    table = mode_mass_dataset(dt)
    if coords:
        table = table.sel(coords)
    methods = list(table["method"].values)
    x = _method_positions(table).broadcast_like(table["expected_mass"])
    x_expected, x_observed = x - SIDE_BY_SIDE, x + SIDE_BY_SIDE
    low = table["expected_mass"] - num_se * table["expected_mass_se"]
    high = table["expected_mass"] + num_se * table["expected_mass_se"]
    observed = _with_axis("mass", x=x_observed, y=table["observed_share"])
    if plot_collection is None:
        pc_kwargs.setdefault("cols", ["mode"])
        pc_kwargs.setdefault("aes", {"color": ["method"]})
        width = max(1.6 * len(methods), 3.6) * min(table.sizes["mode"], 4)  # a panel is wide enough for its title
        pc_kwargs.setdefault("figure_kwargs", {"figsize": (1.2 + width, 4.5)})
        plot_collection = PlotCollection.wrap(observed, backend=backend or rcParams["plot.backend"], **pc_kwargs)
    pc = plot_collection
    layers = {
        "expected": (ci_line_y, _with_axis("mass", x=x_expected, y_bottom=low, y_top=high), {"width": 6, "alpha": 0.4}),
        "expected_point": (scatter_xy, _with_axis("mass", x=x_expected, y=table["expected_mass"]),
                           {"marker": "_", "size": 300}),
        "observed": (scatter_xy, observed, {"marker": "o", "size": 60}),
        "flagged": (
            scatter_xy,
            _with_axis("mass", x=x_observed, y=table["observed_share"].where(table["flagged"])),
            {"marker": "x", "size": 160, "color": FLAG_COLOR},
        ),
    }
    for name, (func, data, defaults) in layers.items():
        ignore = {"color"} if name == "flagged" else frozenset()
        _map_visual(pc, visuals, name, func, data, defaults, ignore_aes=ignore)
    panel = table["expected_mass"].isel(method=0).to_dataset(name="mass")
    _map_visual(pc, visuals, "title", _title_mode, panel, ignore_aes="all", names=_mode_names(dt))
    trees = _trees(dt)
    _map_visual(pc, visuals, "xticks", _xticks, panel, ignore_aes="all", store_artist=False,
                labels=[_mixing_label(m, trees[m]["stein_diagnostics"].dataset) for m in methods])
    _map_visual(pc, visuals, "limits", _limits, panel, ignore_aes="all", store_artist=False,
                xlims=(-0.5, len(methods) - 0.5), ylims=(-0.03, 1.03))
    return pc


def _limits(da, target, xlims, ylims, **kwargs):
    """x limits on every panel; y limits on panels of masses or p-values (not on a KSD^2 panel)."""
    plot_backend = backend_from_object(target)
    plot_backend.xlim(xlims, target, **kwargs)
    if da.name is None or da.name in ("mass",) or str(da.name).endswith("pvalue"):
        plot_backend.ylim(ylims, target, **kwargs)


def _mixing_label(method: str, diag: xr.Dataset) -> str:
    """``"nuts\n2 moves\nR-hat inf\nnot mixing"`` for chains between two or more modes; else the name."""
    if "transitions" not in diag or diag.sizes["mode"] < 2:
        return method
    rhat = diag["basin_rhat"].values
    rhat = rhat[~np.isnan(rhat)]
    label = f"{method}\n{int(diag['transitions'].sum())} moves"
    if rhat.size:
        label += f"\nR-hat {'inf' if np.isinf(rhat.max()) else f'{rhat.max():.2f}'}"
    return label + ("" if diag.attrs["mixing"] else "\nnot mixing")


def _mode_names(dt) -> dict[int, str]:
    """``{mode: "x = 4"}`` from a Report's modes when each is a few numbers; else ``"mode k"``."""
    modes = getattr(dt, "modes", None)
    return {} if modes is None else {k: modes.label(k) for k in range(len(modes))}


def _title_mode(da, target, names, **kwargs):
    mode = int(da["mode"])
    return labelled_title(da, target, text=names.get(mode, f"mode {mode}"), **kwargs)


def plot_ksd(
    dt,
    *,
    alpha: float = 0.05,
    plot_collection=None,
    backend=None,
    visuals=None,
    **pc_kwargs,
):
    """KSD statistic and p-value per method (and the perturbed test's, when the report has it).

    One panel per quantity, methods along x (names broken at ``_`` so they need no rotation);
    the p-value panels run from 0 to 1 and carry a line at ``alpha``. Visuals: ``points``,
    ``alpha_line``, ``title``, ``xticks``, ``limits``. As in :func:`plot_mode_mass`, there is
    nothing to label or compute, so ``labeller``, ``aes_by_visuals`` and ``stats`` are not taken.
    """
    visuals = dict(visuals or {})
    table = ksd_dataset(dt)
    methods = list(table["method"].values)
    x = _method_positions(table)
    points = xr.merge([_with_axis(name, x=x, y=table[name]) for name in table.data_vars])
    if plot_collection is None:
        pc_kwargs.setdefault("cols", ["__variable__"])
        pc_kwargs.setdefault("col_wrap", 2)
        pc_kwargs.setdefault("aes", {"color": ["method"]})
        pc_kwargs.setdefault("figure_kwargs", {"figsize": (2.5 + 2.2 * len(methods), 3.4 * len(table.data_vars) / 2),
                                               "layout": "constrained"})
        plot_collection = PlotCollection.wrap(points, backend=backend or rcParams["plot.backend"], **pc_kwargs)
    pc = plot_collection
    _map_visual(pc, visuals, "points", scatter_xy, points, {"marker": "o", "size": 60})
    panels = xr.Dataset({name: table[name].isel(method=0) for name in table.data_vars})
    pvalues = panels[[n for n in panels.data_vars if n.endswith("pvalue")]]
    _map_visual(pc, visuals, "alpha_line", _hline, pvalues, {"color": FLAG_COLOR, "linestyle": "--"},
                ignore_aes="all", value=alpha)
    _map_visual(pc, visuals, "title", labelled_title, panels, ignore_aes="all", subset_info=True,
                labeller=_VarLabeller())
    _map_visual(pc, visuals, "xticks", _xticks, panels, ignore_aes="all", store_artist=False,
                labels=[m.replace("_", "\n") for m in methods])
    _map_visual(pc, visuals, "limits", _limits, panels, ignore_aes="all", store_artist=False,
                xlims=(-0.5, len(methods) - 0.5), ylims=(-0.03, 1.03))
    return pc


KSD_TITLES = {"ksd": "KSD^2, plain", "ksd_pvalue": "p-value, plain",
              "perturbed_ksd": "KSD^2, perturbed", "perturbed_ksd_pvalue": "p-value, perturbed"}


class _VarLabeller:
    def make_label_vert(self, var_name, sel, isel):
        return KSD_TITLES.get(var_name, var_name)


def plot_methods(
    dt,
    *,
    var_names=None,
    filter_vars=None,
    group="posterior",
    coords=None,
    sample_dims=None,
    plot_collection=None,
    backend=None,
    labeller=None,
    aes_by_visuals=None,
    visuals=None,
    stats=None,
    modes=None,
    **pc_kwargs,
):
    """Marginal posteriors of every method overlaid (arviz-plots' ``plot_dist``), found modes marked.

    Methods of different sizes keep their credible intervals (``skipna`` is set for the
    outer-joined draws). ``modes``: ``{site: (K, ...)}`` mode locations to mark; taken from
    the Report when ``dt`` is one. Visuals ``modes`` (the vertical lines) and ``legend``
    (:meth:`PlotCollection.add_legend`) join plot_dist's own; its ``point_estimate_text`` is
    off unless asked for (one "mean" label per method would stack up on each panel).
    """
    visuals = dict(visuals or {})
    mode_values = modes if modes is not None else (dt.modes.constrained() if hasattr(dt, "modes") else None)
    trees = _trees(dt)
    stats = dict(stats or {})
    for key in ("credible_interval", "point_estimate"):
        stats.setdefault(key, {"skipna": True})
    visuals.setdefault("point_estimate_text", False)  # one "mean" label per method would stack up
    mode_visual = visuals.pop("modes", {})
    legend_visual = visuals.pop("legend", {})
    # concatenated here with an explicit outer join: methods may hold different numbers of draws
    joined = xr.concat([t[group].dataset for t in trees.values()], dim="model", join="outer")
    joined = xr.DataTree.from_dict({group: joined.assign_coords(model=list(trees))})
    pc = plot_dist(
        joined, var_names=var_names, filter_vars=filter_vars, group=group,
        coords=coords, sample_dims=sample_dims, plot_collection=plot_collection, backend=backend,
        labeller=labeller, aes_by_visuals=aes_by_visuals, visuals=visuals, stats=stats, **pc_kwargs,
    )
    if mode_values is not None and mode_visual is not False:
        posterior = next(iter(trees.values()))[group].dataset
        marks = _marks_like(posterior, {
            k: v for k, v in mode_values.items() if k in posterior.data_vars and (var_names is None or k in var_names)
        })
        if coords:
            marks = marks.sel({k: v for k, v in coords.items() if k in marks.dims})
        pc.map(_vlines, "modes", data=marks, ignore_aes="all", store_artist=False,
               **{"color": "black", "linestyle": ":", **(mode_visual or {})})
    if plot_collection is None and legend_visual is not False:
        pc.add_legend("model", **(legend_visual or {}))
    return pc
