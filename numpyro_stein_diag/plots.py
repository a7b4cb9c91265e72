"""ArviZ-style plots of a report: each builds (or reuses) a PlotCollection and returns it.

The functions take a :class:`~numpyro_stein_diag.report.Report` or ``{method: DataTree}``
with a ``stein_diagnostics`` group (what ``Report.to_datatrees()`` gives and what a saved
report loads back as), so a report plots the same before and after a round trip.
Each visual is one small function mapped over the PlotCollection, as in arviz-plots.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from importlib import import_module

import numpy as np
import xarray as xr
from arviz_base import rcParams
from arviz_base.labels import BaseLabeller, MapLabeller
from arviz_base.validate import validate_sample_dims
from arviz_plots import PlotCollection, plot_dist
from arviz_plots.visuals import backend_from_object, ci_line_y, labelled_title, labelled_y, scatter_xy

from .modes import mode_values_dataset

__all__ = ["plot_mode_mass", "plot_ksd", "plot_methods", "mode_mass_dataset", "ksd_dataset", "constant_draws"]

FLAG_COLOR = "black"  # not a colour of the default method cycle, so a flag never reads as a method
SIDE_BY_SIDE = 0.15  # x offset of the expected mass (left) and the observed share (right) of a method
CONSTANT_STEPS = 1024  # float steps: twice the KDE's 512-point grid (see constant_draws)


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
    return xr.Dataset(
        {
            f"{prefix[str(test)]}{name}": table[name].sel(test=test, drop=True)
            for test in table["test"].values
            if bool(table["ksd"].sel(test=test).notnull().all())
            for name in ("ksd", "ksd_pvalue")
        }
    )


# ---------------------------------------------------------------------------- visuals
def _xticks(da, target, labels, **kwargs):
    return backend_from_object(target).xticks(np.arange(len(labels)), list(labels), target, **kwargs)


def _hline(da, target, value, **kwargs):
    return backend_from_object(target).hline(value, target, **kwargs)


def _text(da, target, x, y, string, **kwargs):
    return backend_from_object(target).text(x, y, string, target, **kwargs)


def _vlines(da, target, **kwargs):
    """One vertical line per finite value of ``da`` (e.g. every mode of one parameter)."""
    plot_backend = backend_from_object(target)
    return [plot_backend.vline(float(v), target, **kwargs) for v in np.ravel(da.values) if np.isfinite(v)]


def _legend(pc, entries: dict, title: str, **kwargs):
    """A figure legend of marks that no aesthetic maps: ``entries`` is ``{label: miniature kwargs}``
    (the backend's line miniature, e.g. matplotlib's ``Line2D`` kwargs)."""
    plot_backend = import_module(f"arviz_plots.backend.{pc.backend}")
    return plot_backend.legend(pc, list(entries.values()), list(entries), title=title, **kwargs)


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
    shares were judged against the masses' se alone. The mass axis runs from 0 to 1 and is
    labelled on the first panel; a legend says what bar, tick, dot and cross mean (when this
    function makes the figure). Visuals: ``expected``, ``expected_point``, ``observed``,
    ``flagged``, ``title``, ``xticks``, ``ylabel``, ``limits``, ``legend`` (each a mapping of
    kwargs, or False to skip). There is nothing to label or compute, so arviz-plots'
    ``labeller``, ``aes_by_visuals`` and ``stats`` are not taken.
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
    made_here = plot_collection is None
    if made_here:
        pc_kwargs.setdefault("cols", ["mode"])
        pc_kwargs.setdefault("aes", {"color": ["method"]})
        width = max(1.6 * len(methods), 3.6) * min(table.sizes["mode"], 4)  # a panel is wide enough for its title
        pc_kwargs.setdefault("figure_kwargs", {"figsize": (1.2 + width, 5.2), "layout": "constrained"})
        plot_collection = PlotCollection.wrap(observed, backend=backend or rcParams["plot.backend"], **pc_kwargs)
    pc = plot_collection
    layers = {
        "expected": (ci_line_y, _with_axis("mass", x=x_expected, y_bottom=low, y_top=high), {"width": 6, "alpha": 0.4}),
        "expected_point": (
            scatter_xy,
            _with_axis("mass", x=x_expected, y=table["expected_mass"]),
            {"marker": "_", "size": 300},
        ),
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
    _map_visual(
        pc,
        visuals,
        "xticks",
        _xticks,
        panel,
        ignore_aes="all",
        store_artist=False,
        labels=[_mixing_label(m, trees[m]["stein_diagnostics"].dataset) for m in methods],
    )
    _map_visual(
        pc,
        visuals,
        "ylabel",
        labelled_y,
        panel.isel(mode=[0]),
        ignore_aes="all",
        store_artist=False,
        text="probability mass of the mode",
    )  # on the first panel only: not stored (viz would not align)
    _probability_limits(pc, visuals, panel, len(methods))
    if made_here and visuals.get("legend", True) is not False:
        _legend(
            pc,
            _mass_marks(num_se),
            "colour: method",
            **{"loc": "outside lower center", "ncols": 2, **(visuals.get("legend") or {})},
        )
    return pc


def _mass_marks(num_se: float) -> dict:
    """Legend entries of :func:`plot_mode_mass`'s marks, drawn in grey (colour is the method's)."""
    mark = {"color": "gray", "linestyle": "none"}
    return {
        f"expected mass ± {num_se:g} se (bar)": {
            **mark,
            "alpha": 0.4,
            "marker": "|",
            "markersize": 14,
            "markeredgewidth": 6,
        },
        "expected mass (tick)": {**mark, "marker": "_", "markersize": 14, "markeredgewidth": 1.5},
        "observed share of the draws (dot)": {**mark, "marker": "o", "markersize": 7},
        "flagged: missed or misweighted (cross)": {**mark, "color": FLAG_COLOR, "marker": "x", "markersize": 10},
    }


def _probability_limits(pc, visuals, panels, num_methods):
    """Methods at x = 0, 1, ... and a probability (mass, share, p-value) on y, 0 to 1 with a margin."""
    _map_visual(
        pc,
        visuals,
        "limits",
        _limits,
        panels,
        ignore_aes="all",
        store_artist=False,
        xlims=(-0.5, num_methods - 0.5),
        ylims=(-0.03, 1.03),
    )


def _limits(da, target, xlims, ylims, **kwargs):
    plot_backend = backend_from_object(target)
    plot_backend.xlim(xlims, target, **kwargs)
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
    """Bootstrap p-value of each KSD test per method, read against a line at ``alpha``.

    One panel per test: the plain one and, when the report has it, the perturbed one (mode
    jumps). Methods along x (names broken at ``_`` so they need no rotation), p-values from 0
    to 1. KSD^2 itself is not drawn: its size depends on the kernel, the lengthscale and the
    dimension, and the report keeps the statistic and its p-value but not the bootstrap
    replicates it was compared with, so a KSD^2 on its own axis has nothing to be read against;
    the p-value is that statistic's place in its bootstrap null (:func:`ksd_dataset` holds both).
    Visuals: ``points``, ``alpha_line``, ``alpha_text``, ``title``, ``xticks``, ``ylabel``,
    ``limits``. As in :func:`plot_mode_mass`, there is nothing to label or compute, so
    ``labeller``, ``aes_by_visuals`` and ``stats`` are not taken.
    """
    visuals = dict(visuals or {})
    table = ksd_dataset(dt)
    table = table[[name for name in table.data_vars if name.endswith("pvalue")]]
    methods = list(table["method"].values)
    x = _method_positions(table)
    points = xr.merge([_with_axis(name, x=x, y=table[name]) for name in table.data_vars])
    if plot_collection is None:
        pc_kwargs.setdefault("cols", ["__variable__"])
        pc_kwargs.setdefault("aes", {"color": ["method"]})
        pc_kwargs.setdefault(
            "figure_kwargs",
            {"figsize": ((1.5 + 1.4 * len(methods)) * len(table.data_vars), 3.6), "layout": "constrained"},
        )
        plot_collection = PlotCollection.wrap(points, backend=backend or rcParams["plot.backend"], **pc_kwargs)
    pc = plot_collection
    _map_visual(pc, visuals, "points", scatter_xy, points, {"marker": "o", "size": 60})
    panels = xr.Dataset({name: table[name].isel(method=0) for name in table.data_vars})
    _map_visual(
        pc,
        visuals,
        "alpha_line",
        _hline,
        panels,
        {"color": FLAG_COLOR, "linestyle": "--"},
        ignore_aes="all",
        value=alpha,
    )
    _map_visual(
        pc,
        visuals,
        "alpha_text",
        _text,
        panels,
        {"color": FLAG_COLOR, "vertical_align": "bottom", "horizontal_align": "left"},
        ignore_aes="all",
        x=-0.45,
        y=alpha,
        string=f"α = {alpha:g}",
    )
    _map_visual(
        pc,
        visuals,
        "title",
        labelled_title,
        panels,
        ignore_aes="all",
        subset_info=True,
        labeller=MapLabeller(var_name_map=KSD_TITLES),
    )
    _map_visual(
        pc,
        visuals,
        "ylabel",
        labelled_y,
        panels[list(panels.data_vars)[:1]],
        ignore_aes="all",
        text="bootstrap p-value",
    )
    _map_visual(
        pc,
        visuals,
        "xticks",
        _xticks,
        panels,
        ignore_aes="all",
        store_artist=False,
        labels=[m.replace("_", "\n") for m in methods],
    )
    _probability_limits(pc, visuals, panels, len(methods))
    return pc


KSD_TITLES = {"ksd_pvalue": "plain KSD test", "perturbed_ksd_pvalue": "perturbed KSD test (mode jumps)"}


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
    the Report when ``dt`` is one. Panel titles take one line (``x[3]``). A coordinate whose
    draws in a method are constant up to float rounding (:func:`constant_draws`: LKJ's unit
    diagonal, LKJCholesky's fixed entries) has no density to estimate; it is drawn as a line at
    its value in the method's colour, and a title says ``= value (constant)`` where every method
    is. Visuals ``constant`` (those lines), ``modes`` (dotted black lines at the modes) and
    ``legend`` (:meth:`PlotCollection.add_legend`, with the mode mark) join plot_dist's own; its
    ``point_estimate_text`` is off unless asked for (one "mean" label per method would stack up).
    """
    visuals = dict(visuals or {})
    mode_values = modes if modes is not None else (dt.modes.constrained() if hasattr(dt, "modes") else None)
    trees = _trees(dt)
    stats = dict(stats or {})
    for key in ("credible_interval", "point_estimate"):
        stats.setdefault(key, {"skipna": True})
    visuals.setdefault("point_estimate_text", False)  # one "mean" label per method would stack up
    mode_visual = visuals.pop("modes", {})
    constant_visual = visuals.pop("constant", {})
    legend_visual = visuals.pop("legend", {})
    # concatenated here with an explicit outer join: methods may hold different numbers of draws
    joined = xr.concat([t[group].dataset for t in trees.values()], dim="model", join="outer")
    joined = joined.assign_coords(model=list(trees))
    sample_dims = validate_sample_dims(sample_dims, data=joined)
    constant = constant_draws(joined, sample_dims)
    values = joined.mean(sample_dims)
    joined = joined.where(~constant | joined.isnull(), values)  # exactly constant: the KDE's one-value case
    if labeller is None:
        labeller = _PanelLabeller(values.where(constant.all("model")))
    if plot_collection is None:  # titles, tick labels and the legends outside kept apart
        pc_kwargs["figure_kwargs"] = {"layout": "constrained", **pc_kwargs.get("figure_kwargs", {})}
    with warnings.catch_warnings():  # the KDE's note on one-value draws: those are drawn as lines below
        warnings.filterwarnings("ignore", message="Your data appears to have a single value")
        pc = plot_dist(
            xr.DataTree.from_dict({group: joined}),
            var_names=var_names,
            filter_vars=filter_vars,
            group=group,
            coords=coords,
            sample_dims=sample_dims,
            plot_collection=plot_collection,
            backend=backend,
            labeller=labeller,
            aes_by_visuals=aes_by_visuals,
            visuals=visuals,
            stats=stats,
            **pc_kwargs,
        )
    if constant_visual is not False:
        pc.map(
            _vlines,
            "constant",
            data=_on_panels(pc, values.where(constant)),
            store_artist=False,
            ignore_aes=pc.aes_set - {"color"},
            **{"width": 2, **(constant_visual or {})},
        )
    mode_mark = {"color": "black", "linestyle": ":", **(mode_visual or {})}
    if mode_values is not None and mode_visual is not False:
        posterior = next(iter(trees.values()))[group].dataset
        marks = _marks_like(posterior, {k: v for k, v in mode_values.items() if k in posterior.data_vars})
        pc.map(_vlines, "modes", data=_on_panels(pc, marks), ignore_aes="all", store_artist=False, **mode_mark)
    if plot_collection is None and legend_visual is not False:
        pc.add_legend("model", title="method", **(legend_visual or {}))
        if mode_values is not None and mode_visual is not False:
            _legend(pc, {"mode found": mode_mark}, "marks")
    return pc


def constant_draws(posterior: xr.Dataset, sample_dims=("chain", "draw")) -> xr.Dataset:
    """True for each coordinate whose draws are constant up to float rounding.

    Constant means a spread :math:`\\max x - \\min x \\le 1024\\,\\varepsilon \\max |x|` over
    ``sample_dims`` (:math:`\\varepsilon` the dtype's machine epsilon, 0 for integers): at most
    1024 float steps of the draws' magnitude. A KDE cuts the range into a 512-point grid, which
    numpy cannot do across fewer than 512 float steps ("Too many bins for data range"; LKJ's
    unit diagonal is 1 +- 1e-7 in float32), and a range of 0 leaves it no density at all
    (LKJCholesky's fixed zeros); 1024 keeps a factor of two from that edge. All-NaN draws are
    not constant.
    """

    def spread_is_rounding(da: xr.DataArray) -> xr.DataArray:
        eps = np.finfo(da.dtype).eps if np.issubdtype(da.dtype, np.floating) else 0.0
        spread = da.max(sample_dims) - da.min(sample_dims)
        return spread <= CONSTANT_STEPS * eps * abs(da).max(sample_dims)

    return posterior.map(spread_is_rounding)


def _on_panels(pc, ds: xr.Dataset) -> xr.Dataset:
    """``ds`` cut to the variables and coordinates that ``pc`` draws (after var_names, coords, ...)."""
    shown = pc.data
    ds = ds[[v for v in ds.data_vars if v in shown.data_vars]]
    return ds.sel({d: shown[d].values for d in ds.dims if d in shown.coords})


class _PanelLabeller(BaseLabeller):
    """One-line panel titles (``x[3]``, not plot_dist's ``x`` over ``3``, which runs into the tick
    labels above), with ``= value (constant)`` where ``constant_values`` (``model`` dim; NaN where a
    method's draws vary) has values: ``= 1 or 2`` when methods sit at different constants."""

    def __init__(self, constant_values: xr.Dataset):
        self.constant_values = constant_values

    def make_label_vert(self, var_name, sel, isel):
        label = self.make_label_flat(var_name, sel, isel)
        if var_name not in self.constant_values:
            return label
        values = np.ravel(self.constant_values[var_name].sel(sel).values)
        if np.isnan(values).any():
            return label
        return f"{label} = {' or '.join(dict.fromkeys(f'{v:.4g}' for v in values))} (constant)"
