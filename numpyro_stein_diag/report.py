"""Report: everything diagnose() found, held as one DataTree (so a saved report loads back equal).

:class:`Report` is a thin wrapper: the tree is the report, and every property reads it.
Layout (ArviZ conventions, one child per method; records along a dimension, not in attrs)::

    /                      attrs: package, methods (JSON list: the methods in order)
    /flags                 (flag) method, kind, mode, expected, expected_se, observed, pvalue, message
    /stages                (stage) step, method, status, reason, seconds
    /modes                 location (mode, param), log_density, hessian, laplace_log_mass (the
                           search's :class:`~numpyro_stein_diag.modes.Modes`), and their masses
                           mass, mass_se (mode); attrs pareto_k, unknown_mass, mass_method,
                           mass_fallback (the
                           :class:`~numpyro_stein_diag.masses.ModeMasses`): one group, one ``mode``
                           dim, two views (:attr:`Report.modes`, :attr:`Report.masses`)
    /modes/values          mode locations in the model's space, one variable per site
    /modes/runaway         (runaway: 0 or 1) the search's runaway ascents, one variable per field
                           of :class:`~numpyro_stein_diag.modes.Runaway`
    /modes/degenerate      (degenerate: 0 or 1) ascents that ended at degenerate points, one
                           variable per field of :class:`~numpyro_stein_diag.modes.Degenerate`
    /<method>/posterior    (chain, draw, ...) constrained draws
    /<method>/sample_stats NUTS only (arviz_base.from_numpyro)
    /<method>/stein_diagnostics
                           (test: plain, perturbed) ksd, ksd_pvalue and the test's settings
                           (ksd_n, ksd_bootstrap, ksd_kernel, ...);
                           (mode) expected_mass, expected_mass_se, observed_share, ess,
                           share_pvalue, missed, misweighted; SVGD history; for chains:
                           transitions (chain), basin_rhat (mode); attrs independent,
                           unknown_share, mixing, tolerance
    /<method>/repaired_posterior
                           (chain, draw, ...) the draws reweighted so each basin holds its mass
    /<method>/repair       mass, share_before, draws_kept, draws_filled, fill_pareto_k,
                           fill_ess (mode); attrs unknown_kept, fill_method, order
"""

from __future__ import annotations

import dataclasses
import json
from functools import cached_property
from pathlib import Path

import arviz_base
import numpy as np
import pandas as pd
import xarray as xr

from .audit import MethodAudit
from .check import Flag, ModeCheck
from .discovery import UNSEEN_LIMIT
from .kernels import IMQ, RBF
from .ksd import KSDTest
from .masses import ModeMasses
from .modes import Degenerate, Modes, Runaway, mode_labels, mode_values_dataset
from .repair import Repair
from .stages import Stage

__all__ = ["Report"]

KERNELS = {"IMQ": IMQ, "RBF": RBF}
KERNEL_FIELDS = ("c", "beta", "lengthscale")  # every kernel's fields; NaN where a kernel has none or None
MODE_VARS = ("location", "log_density", "hessian", "laplace_log_mass", "start_counts")
MASS_VARS = ("mass", "mass_se")
MASS_ATTRS = ("pareto_k", "unknown_mass")
FLAG_FIELDS = tuple(f.name for f in dataclasses.fields(Flag))
STAGE_FIELDS = tuple(f.name for f in dataclasses.fields(Stage))
RUNAWAY_FIELDS = tuple(f.name for f in dataclasses.fields(Runaway))
DEGENERATE_FIELDS = tuple(f.name for f in dataclasses.fields(Degenerate))
TEST_FIELDS = ("n", "bootstrap", "num_bootstrap", "lengthscale", "statistic_type", "variant", "setting", "standardized")


class Report:
    """The result of :func:`~numpyro_stein_diag.diagnose`: a DataTree (:attr:`tree`) and views of it.

    Views: ``methods``, ``flags`` (list of :class:`~numpyro_stein_diag.check.Flag`), ``ok``,
    ``stages`` (list of :class:`~numpyro_stein_diag.stages.Stage`: what each step could do, and
    how long it took), ``complete``, ``modes`` (:class:`Modes`), ``masses`` (:class:`ModeMasses`), ``ksd`` and
    ``perturbed_ksd`` ({method: KSDTest}), ``checks`` ({method: ModeCheck}); tables
    (:meth:`to_dataframe`), text (:meth:`summary`), pictures (:meth:`plot`), files
    (:meth:`save`, :meth:`load`).
    """

    def __init__(self, tree: xr.DataTree):
        self.tree = tree
        self.plot_failures: dict[str, str] = {}  # pictures the last plot() could not make, and why

    @classmethod
    def build(cls, modes: Modes, masses: ModeMasses, audits: dict[str, MethodAudit], stages: list[Stage]) -> Report:
        """The report of ``audits`` (one per method, in order) against ``modes`` and their ``masses``."""
        root = xr.Dataset(attrs={"package": "numpyro_stein_diag", "methods": json.dumps(list(audits))})
        flags = [f for a in audits.values() for f in a.check.flags]
        children = {
            "flags": xr.DataTree(dataset=_records_dataset(flags, FLAG_FIELDS, "flag")),
            "stages": xr.DataTree(dataset=_records_dataset(stages, STAGE_FIELDS, "stage")),
            "modes": _modes_tree(modes, masses),
        }
        children.update({name: _method_tree(a) for name, a in audits.items()})
        return cls(xr.DataTree(dataset=root, children=children))

    # ------------------------------------------------------------------ views
    @cached_property
    def methods(self) -> list[str]:
        return json.loads(self.tree.attrs["methods"])

    @cached_property
    def flags(self) -> list[Flag]:
        """Every flag, in the order the checks raised them (the ``/flags`` group of :attr:`tree`)."""
        return _records(self.tree["flags"].dataset, Flag, FLAG_FIELDS)

    @property
    def ok(self) -> bool:
        """True when no method raised a flag (see :attr:`complete` for whether every check could run)."""
        return not self.flags

    @cached_property
    def stages(self) -> list[Stage]:
        """What each step of diagnose() could do: ok, warning or failed, with the reason and its time."""
        return _records(self.tree["stages"].dataset, Stage, STAGE_FIELDS)

    @property
    def complete(self) -> bool:
        """True when every stage ran without failing and the mode search looks complete (its
        Good-Turing chance of an unseen mode, and the mass in no known basin, at most
        ``UNSEEN_LIMIT``): only then does "no flag" cover every check."""
        unseen = (self.modes.unseen_chance, self.masses.unknown_mass)
        search_complete = not any(u > UNSEEN_LIMIT for u in unseen)  # NaN (not known) does not count
        return search_complete and all(s.status != "failed" for s in self.stages)

    @property
    def timings(self) -> dict[str, float]:
        """Seconds per step of diagnose() (``run``, ``modes``, ``masses``, ``check``, ``repair``),
        summed over methods."""
        totals: dict[str, float] = {}
        for stage in self.stages:
            totals[stage.step] = totals.get(stage.step, 0.0) + stage.seconds
        return totals

    @cached_property
    def modes(self) -> Modes:
        """The modes the search found (the ``/modes`` group of :attr:`tree`)."""
        ds = self.tree["modes"].dataset
        values = {k: v.values for k, v in self.tree["modes/values"].dataset.data_vars.items()}
        runaway = _records(self.tree["modes/runaway"].dataset, Runaway, RUNAWAY_FIELDS)
        degenerate = (
            _records(self.tree["modes/degenerate"].dataset, Degenerate, DEGENERATE_FIELDS)
            if "degenerate" in self.tree["modes"].children
            else []
        )
        return Modes(
            **{v: ds[v].values for v in MODE_VARS},
            values=values,
            runaway=runaway[0] if runaway else None,
            degenerate=degenerate[0] if degenerate else None,
        )

    @cached_property
    def masses(self) -> ModeMasses:
        """The modes' masses, in the order of :attr:`modes` (the ``/modes`` group of :attr:`tree`)."""
        ds = self.tree["modes"].dataset
        return ModeMasses(
            *(ds[v].values for v in MASS_VARS),
            *(float(ds.attrs[a]) for a in MASS_ATTRS),
            mass_method=str(ds.attrs["mass_method"]),
            fallback=str(ds.attrs.get("mass_fallback", "")),
        )

    def diagnostics(self, method: str) -> xr.Dataset:
        """The method's ``stein_diagnostics`` group."""
        if method not in self.methods:
            raise KeyError(f"no method {method!r} in this report; it has {self.methods}.")
        return self.tree[method]["stein_diagnostics"].dataset

    def tests(self, method: str) -> dict[str, KSDTest]:
        """The method's KSD tests: ``"plain"``, and ``"perturbed"`` when it was checked against two
        or more modes."""
        self.diagnostics(method)  # names the methods when there is no such one
        return self._tests[method]

    @cached_property
    def _tests(self) -> dict[str, dict[str, KSDTest]]:
        """Every method's KSD tests, read from the tree once."""
        return {m: _ksd_tests(self.diagnostics(m)) for m in self.methods}

    def stage(self, step: str, method: str = "") -> Stage | None:
        """The stage of ``step`` (for ``method``), or None when the report holds none."""
        return next((s for s in self.stages if s.step == step and s.method == method), None)

    @cached_property
    def ksd(self) -> dict[str, KSDTest]:
        """Plain KSD test per method."""
        return {m: self.tests(m)["plain"] for m in self.methods}

    @cached_property
    def perturbed_ksd(self) -> dict[str, KSDTest]:
        """Perturbed KSD test per method (only methods checked against two or more modes)."""
        return {m: tests["perturbed"] for m in self.methods if "perturbed" in (tests := self.tests(m))}

    @cached_property
    def checks(self) -> dict[str, ModeCheck]:
        """The mode-mass check of every method, with its flags."""
        return {
            m: _mode_check(m, self.diagnostics(m), tuple(f for f in self.flags if f.method == m)) for m in self.methods
        }

    def to_datatree(self, method: str) -> xr.DataTree:
        """The method's DataTree: ``posterior``, ``sample_stats`` (NUTS), ``stein_diagnostics``."""
        self.diagnostics(method)  # names the methods when there is no such one
        return self.tree[method].copy()

    def to_datatrees(self) -> dict[str, xr.DataTree]:
        return {m: self.to_datatree(m) for m in self.methods}

    def repaired(self, method: str) -> xr.DataTree:
        """The method's draws reweighted so each basin holds its estimated mass.

        A DataTree with a ``posterior`` group (equally weighted draws, dims ``(chain, draw,
        ...)`` in the model's space, shuffled: no time order) and a ``repair`` group (per mode:
        ``mass``, ``share_before``, ``draws_kept``, ``draws_filled`` and the fill-in's
        ``fill_pareto_k`` and ``fill_ess``). See :mod:`numpyro_stein_diag.repair`.
        """
        self.diagnostics(method)
        node = self.tree[method]
        if "repair" not in node.children:
            stage = self.stage("repair", method)
            reason = stage.reason if stage else "the report holds no repair stage for it"
            raise ValueError(f"this report holds no repaired draws for {method!r}: {reason}")
        return xr.DataTree(
            children={
                "posterior": xr.DataTree(dataset=node["repaired_posterior"].dataset.copy()),
                "repair": xr.DataTree(dataset=node["repair"].dataset.copy()),
            }
        )

    # ------------------------------------------------------------------ tables and text
    def to_dataframe(self) -> pd.DataFrame:
        """One row per (method, mode): the mode's label and location, its expected mass and se, the
        method's observed share, the share's ESS and the effective draws in the basin, the
        p-value, and the flags on it; each row also carries the method's KSD p-values and whether
        its chains mix. A report without modes has one row per method with ``mode = -1``."""
        modes = self.modes
        labels = mode_labels(modes)
        rows = []
        for m, check in self.checks.items():
            tests = self.tests(m)
            method_columns = {
                "ksd_pvalue": tests["plain"].pvalue if "plain" in tests else np.nan,
                "perturbed_ksd_pvalue": tests["perturbed"].pvalue if "perturbed" in tests else np.nan,
                "mixing": check.mixing,
            }
            for j in range(len(check.expected_mass)) or (-1,):
                known = j >= 0
                rows.append(
                    {
                        "method": m,
                        "mode": j,
                        "label": labels[j] if known else "",
                        "location": modes.location_text(j) if known else "",
                        "expected_mass": check.expected_mass[j] if known else np.nan,
                        "expected_mass_se": check.expected_mass_se[j] if known else np.nan,
                        "observed_share": check.observed_share[j] if known else np.nan,
                        "ess": check.ess[j] if known else np.nan,
                        "basin_ess": check.ess[j] * check.observed_share[j] if known else np.nan,
                        "pvalue": check.pvalue[j] if known else np.nan,
                        "flags": ", ".join(f.kind for f in check.flags if f.mode == j),
                        **method_columns,
                    }
                )
        return pd.DataFrame(rows).set_index(["method", "mode"])

    def summary(self) -> str:
        """Stages that did not go as planned, then a table per method (expected mass against observed
        share per mode, KSD), then the flags in words and the repaired posteriors."""
        from .render import summary_text

        return summary_text(self)

    def __repr__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        """The summary for notebooks, with flagged rows highlighted."""
        from .render import summary_html

        return summary_html(self)

    # ------------------------------------------------------------------ pictures
    def plot(self, out_dir=None) -> dict:
        """The plots, ``{"mode_mass", "ksd", "methods"}: PlotCollection`` (none without a method,
        ``mode_mass`` only when a mode was found); with ``out_dir`` each is saved there as
        ``<name>.png`` as soon as it is drawn.

        A picture that cannot be drawn or saved does not stop the others: it is left out of
        the result, and ``self.plot_failures`` (``{name: "ErrorType: reason"}``, reset at each
        call) says why.
        """
        from . import plots

        makers = {}
        if self.methods:
            makers = {"mode_mass": plots.plot_mode_mass} if len(self.modes) else {}
            makers.update({"ksd": plots.plot_ksd, "methods": plots.plot_methods})
        if out_dir is not None:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
        collections, self.plot_failures = {}, {}
        for name, make in makers.items():
            try:
                pc = make(self)
                if out_dir is not None:
                    pc.savefig(Path(out_dir) / f"{name}.png", bbox_inches="tight")
            except Exception as err:  # one picture's failure must not cost the others
                self.plot_failures[name] = f"{type(err).__name__}: {err}"
                continue
            collections[name] = pc
        return collections

    # ------------------------------------------------------------------ files
    def save(self, path) -> None:
        """Write the whole report to one netCDF file (h5netcdf)."""
        self.tree.to_netcdf(path, engine="h5netcdf")

    @classmethod
    def load(cls, path) -> Report:
        """Read a report written by :meth:`save`; it compares equal to the saved one."""
        with xr.open_datatree(path, engine="h5netcdf") as tree:
            tree = tree.load()
        if tree.attrs.get("package") != "numpyro_stein_diag":
            raise ValueError(f"{path} is not a numpyro_stein_diag report (no 'package' attribute).")
        return cls(tree)

    def __eq__(self, other) -> bool:
        return isinstance(other, Report) and self.tree.identical(other.tree)


# ---------------------------------------------------------------------- to the tree
def _records_dataset(records: list, fields: tuple[str, ...], dim: str) -> xr.Dataset:
    """Frozen dataclasses as variables along ``dim``, one per field, so that xarray can select
    them (``ds.where(ds.kind == "missed_mode", drop=True)``)."""
    columns = {name: [getattr(r, name) for r in records] for name in fields}
    return xr.Dataset({name: (dim, np.array(values, dtype=_dtype(values))) for name, values in columns.items()})


def _dtype(values: list):
    """A column's dtype: text as str, integers as int64, anything else (and an empty column) as float64."""
    if any(isinstance(v, str) for v in values):
        return str
    if values and all(isinstance(v, int | np.integer) for v in values):
        return np.int64
    return np.float64


def _records(ds: xr.Dataset, cls, fields: tuple[str, ...]) -> list:
    """The inverse of :func:`_records_dataset`."""
    dim = next(iter(ds.dims), None)
    n = ds.sizes[dim] if dim else 0
    return [cls(**{name: ds[name].values[i].item() for name in fields}) for i in range(n)]


def _start_counts(modes: Modes) -> np.ndarray:
    """Converged ascents per mode; -1 where not known (modes not found by the search)."""
    return np.full(len(modes), -1) if modes.start_counts is None else np.asarray(modes.start_counts, np.int64)


def _modes_tree(modes: Modes, masses: ModeMasses) -> xr.DataTree:
    dims = {"location": ("mode", "param"), "hessian": ("mode", "param", "param_")}
    ds = xr.Dataset(
        {v: (dims.get(v, ("mode",)), np.asarray(getattr(modes, v))) for v in MODE_VARS if v != "start_counts"}
        | {"start_counts": (("mode",), _start_counts(modes))}
        | {v: (("mode",), np.asarray(getattr(masses, v))) for v in MASS_VARS},
        attrs={a: float(getattr(masses, a)) for a in MASS_ATTRS}
        | {"mass_method": str(masses.mass_method), "mass_fallback": masses.fallback},
    )
    runaway = _records_dataset([modes.runaway] if modes.runaway is not None else [], RUNAWAY_FIELDS, "runaway")
    degenerate = _records_dataset(
        [modes.degenerate] if modes.degenerate is not None else [], DEGENERATE_FIELDS, "degenerate"
    )
    return xr.DataTree(
        dataset=ds,
        children={
            "values": xr.DataTree(dataset=mode_values_dataset(modes.values)),
            "runaway": xr.DataTree(dataset=runaway),
            "degenerate": xr.DataTree(dataset=degenerate),
        },
    )


def _tests_dataset(tests: dict[str, KSDTest]) -> xr.Dataset:
    """A method's KSD tests along a ``test`` dim: statistic (``ksd``), p-value and settings."""
    listed = list(tests.values())
    columns = {
        "ksd": [t.statistic for t in listed],
        "ksd_pvalue": [t.pvalue for t in listed],
        "ksd_kernel": [type(t.kernel).__name__ for t in listed],
    }
    columns.update({f"ksd_{name}": [getattr(t, name) for t in listed] for name in TEST_FIELDS})
    columns["ksd_standardized"] = [int(t.standardized) for t in listed]
    for name in KERNEL_FIELDS:
        columns[f"ksd_kernel_{name}"] = [_nan_if_none(getattr(t.kernel, name, None)) for t in listed]
    return xr.Dataset(
        {k: ("test", np.array(v, dtype=_dtype(v))) for k, v in columns.items()}, coords={"test": list(tests)}
    )


def _nan_if_none(value) -> float:
    return np.nan if value is None else float(value)


def _method_tree(audit: MethodAudit) -> xr.DataTree:
    run, check, repair = audit.run, audit.check, audit.repair
    if run.mcmc is not None:
        full = arviz_base.from_numpyro(run.mcmc)
        groups = {g: full[g].dataset for g in ("posterior", "sample_stats") if g in full.children}
    elif run.groups:
        groups = dict(run.groups)
    else:
        samples = {k: np.asarray(v) for k, v in run.samples.items()}
        groups = {"posterior": arviz_base.from_dict({"posterior": samples})["posterior"].dataset}
    modes = np.arange(len(check.expected_mass))

    def flagged(kind):
        return np.array([any(f.kind == kind and f.mode == j for f in check.flags) for j in modes], np.int8)

    diag = (
        _tests_dataset(audit.tests)
        .assign(
            {
                "expected_mass": (("mode",), check.expected_mass),
                "expected_mass_se": (("mode",), check.expected_mass_se),
                "observed_share": (("mode",), check.observed_share),
                "ess": (("mode",), check.ess),
                "share_pvalue": (("mode",), check.pvalue),
                "missed": (("mode",), flagged("missed_mode")),
                "misweighted": (("mode",), flagged("misweighted_mode")),
            }
        )
        .assign_coords(mode=modes)
    )
    if check.transitions is not None:
        diag["transitions"] = (("chain",), np.asarray(check.transitions))
        diag["basin_rhat"] = (("mode",), np.asarray(check.basin_rhat))
    for key, value in run.history.items():
        diag[f"history_{key}"] = (("checkpoint",) if key.startswith("ksd") else ("step",), np.asarray(value))
    diag.attrs = {
        "independent": int(run.independent),
        "unknown_share": float(check.unknown_share),
        "mixing": int(check.mixing),
        "tolerance": float(check.tolerance),
    }
    groups["stein_diagnostics"] = diag
    if isinstance(repair, Repair):
        groups["repaired_posterior"] = _like_posterior(repair.samples, groups["posterior"])
        groups["repair"] = _repair_dataset(repair)
    return xr.DataTree(children={g: xr.DataTree(dataset=ds) for g, ds in groups.items()})


def _like_posterior(samples: dict, posterior: xr.Dataset) -> xr.Dataset:
    """``{site: (chain, draw, ...)}`` as a posterior group with the variables, dimension names and
    coordinates of ``posterior`` (sites it does not hold are left out)."""
    samples = {k: np.asarray(v) for k, v in samples.items() if k in posterior.data_vars}
    dims = {k: list(posterior[k].dims[2:]) for k in samples}
    coords = {d: posterior[d].values for k in samples for d in dims[k] if d in posterior.coords}
    return arviz_base.from_dict({"posterior": samples}, dims=dims, coords=coords)["posterior"].dataset


def _repair_dataset(repair: Repair) -> xr.Dataset:
    return xr.Dataset(
        {
            "mass": (("mode",), repair.mass),
            "share_before": (("mode",), repair.share_before),
            "draws_kept": (("mode",), repair.kept),
            "draws_filled": (("mode",), repair.filled),
            "fill_pareto_k": (("mode",), repair.fill_pareto_k),
            "fill_ess": (("mode",), repair.fill_ess),
        },
        coords={"mode": np.arange(len(repair.mass))},
        attrs={
            "unknown_kept": int(repair.unknown_kept),
            "fill_method": repair.fill_method,
            "order": "shuffled: chain and draw carry no time order",
        },
    )


# ---------------------------------------------------------------------- from the tree
def _ksd_tests(ds: xr.Dataset) -> dict[str, KSDTest]:
    """A method's tests of :func:`_tests_dataset`, by the name along ``test``."""
    return {str(name): _ksd_test(ds.sel(test=name)) for name in ds["test"].values}


def _ksd_test(ds: xr.Dataset) -> KSDTest:
    """One test of :func:`_tests_dataset` (``ds`` selected at one ``test``)."""
    kernel_cls = KERNELS[str(ds["ksd_kernel"].item())]
    kernel_fields = {f.name for f in dataclasses.fields(kernel_cls)}
    params = {name: ds[f"ksd_kernel_{name}"].item() for name in KERNEL_FIELDS if name in kernel_fields}
    kernel = kernel_cls(**{k: None if np.isnan(v) else v for k, v in params.items()})
    fields = {name: ds[f"ksd_{name}"].item() for name in TEST_FIELDS}
    return KSDTest(
        statistic=float(ds["ksd"]),
        pvalue=float(ds["ksd_pvalue"]),
        kernel=kernel,
        **{**fields, "standardized": bool(fields["standardized"])},
    )


def _mode_check(method: str, ds: xr.Dataset, flags: tuple[Flag, ...]) -> ModeCheck:
    return ModeCheck(
        method,
        ds["expected_mass"].values,
        ds["expected_mass_se"].values,
        ds["observed_share"].values,
        ds["ess"].values,
        ds["share_pvalue"].values,
        float(ds.attrs["unknown_share"]),
        flags,
        transitions=ds["transitions"].values if "transitions" in ds else None,
        basin_rhat=ds["basin_rhat"].values if "basin_rhat" in ds else None,
        mixing=bool(ds.attrs["mixing"]),
        tolerance=float(ds.attrs["tolerance"]),
    )
