"""Report: everything diagnose() found, held as one DataTree (so a saved report loads back equal).

Layout of the tree (ArviZ conventions, one child per method)::

    /                      attrs: package, methods, stages (JSON)
    /flags                 one entry per flag along a ``flag`` dim: method, kind, mode,
                           expected, expected_se, observed, pvalue, message
    /modes                 location (mode, param), log_density, hessian, laplace_log_mass,
                           mass, mass_se; attrs pareto_k, unknown_mass, mass_method, runaway
    /modes/values          mode locations in the model's space, one variable per site
    /<method>/posterior    (chain, draw, ...) constrained draws
    /<method>/sample_stats NUTS only (arviz_base.from_numpyro)
    /<method>/stein_diagnostics
                           ksd, ksd_pvalue, perturbed_ksd, perturbed_ksd_pvalue (two or more
                           modes), expected_mass, expected_mass_se, observed_mass,
                           ess, mass_pvalue, missed, misweighted (mode), unconstrained draws,
                           SVGD history; for chains: transitions (chain), basin_rhat (mode)
                           and attr mixing; attrs describe the KSD test
    /<method>/repaired_posterior
                           (chain, draw, ...) the draws reweighted so each basin holds its mass
    /<method>/repair       mass, share_before, draws_kept, draws_filled, fill_pareto_k,
                           fill_ess (mode); attrs unknown_kept, fill_method, order
"""

from __future__ import annotations

import dataclasses
import html
import json

import arviz_base
import numpy as np
import pandas as pd
import xarray as xr

from .check import Flag, ModeCheck, mixing_text
from .kernels import IMQ, RBF
from .ksd import KSDTest
from .modes import Modes, mode_values_dataset
from .repair import Repair
from .runs import Run
from .stages import Stage

__all__ = ["Report"]

KERNELS = {"IMQ": IMQ, "RBF": RBF}
MODE_VARS = ("location", "log_density", "hessian", "laplace_log_mass", "mass", "mass_se")


class Report:
    """The result of :func:`~numpyro_stein_diag.diagnose`.

    Attributes: ``runs`` ({method: Run}), ``modes`` (:class:`Modes` with masses), ``ksd`` and
    ``perturbed_ksd`` ({method: KSDTest}), ``checks`` ({method: ModeCheck}), ``flags`` (list
    of Flag), ``ok``, ``stages`` (list of :class:`~numpyro_stein_diag.stages.Stage`: what each
    step could do) and ``complete``.
    """

    def __init__(self, tree: xr.DataTree, runs: dict[str, Run] | None = None, timings: dict | None = None):
        self.tree = tree
        self.runs = runs if runs is not None else _runs_from_tree(tree)
        self.timings = timings or {}  # seconds per stage of diagnose(); not saved

    # ------------------------------------------------------------------ build
    @classmethod
    def build(cls, runs: dict[str, Run], modes: Modes, checks: dict[str, ModeCheck], ksd: dict[str, KSDTest],
              timings: dict | None = None, perturbed_ksd: dict[str, KSDTest] | None = None,
              repairs: dict[str, Repair | str] | None = None, stages: list[Stage] | None = None):
        """``repairs``: per method a :class:`Repair`, or the reason none could be made;
        ``stages``: what each step of diagnose() could do."""
        root = xr.Dataset(attrs={
            "package": "numpyro_stein_diag",
            "methods": json.dumps(list(runs)),
            "stages": json.dumps([dataclasses.asdict(s) for s in stages or ()]),
        })
        flags = [f for c in checks.values() for f in c.flags]
        children = {"flags": xr.DataTree(dataset=_flags_dataset(flags)), "modes": _modes_tree(modes)}
        for name, run in runs.items():
            children[name] = _method_tree(run, checks[name], ksd[name], (perturbed_ksd or {}).get(name),
                                          (repairs or {}).get(name))
        return cls(xr.DataTree(dataset=root, children=children), runs, timings)

    # ------------------------------------------------------------------ views
    @property
    def methods(self) -> list[str]:
        return json.loads(self.tree.attrs["methods"])

    @property
    def flags(self) -> list[Flag]:
        """Every flag, in the order the checks raised them (the ``/flags`` group of :attr:`tree`)."""
        if "flags" not in self.tree.children:  # a report saved before flags were variables
            return [Flag(**f) for f in json.loads(self.tree.attrs["flags"])]
        ds = self.tree["flags"].dataset
        return [Flag(**{name: _scalar(ds[name].values[i]) for name in FLAG_FIELDS}) for i in range(ds.sizes["flag"])]

    @property
    def ok(self) -> bool:
        """True when no method raised a flag (see :attr:`complete` for whether every check could run)."""
        return not self.flags

    @property
    def stages(self) -> list[Stage]:
        """What each step of diagnose() could do: ok, warning or failed, with the reason."""
        return [Stage(**s) for s in json.loads(self.tree.attrs.get("stages", "[]"))]

    @property
    def complete(self) -> bool:
        """True when every stage ran without failing: only then does "no flag" cover every check."""
        return all(s.status != "failed" for s in self.stages)

    @property
    def modes(self) -> Modes:
        ds = self.tree["modes"].dataset
        values = {k: v.values for k, v in self.tree["modes/values"].dataset.data_vars.items()}
        return Modes(
            *(ds[v].values for v in MODE_VARS[:4]),
            values=values,
            mass=ds["mass"].values,
            mass_se=ds["mass_se"].values,
            pareto_k=float(ds.attrs["pareto_k"]),
            unknown_mass=float(ds.attrs["unknown_mass"]),
            mass_method=str(ds.attrs["mass_method"]),
            runaway=str(ds.attrs.get("runaway", "")),
        )

    @property
    def ksd(self) -> dict[str, KSDTest]:
        """Plain KSD test per method."""
        return {m: _ksd_from_dataset(self.tree[m]["stein_diagnostics"].dataset, "ksd") for m in self.methods}

    @property
    def perturbed_ksd(self) -> dict[str, KSDTest]:
        """Perturbed KSD test per method (only methods checked against two or more modes)."""
        return {
            m: _ksd_from_dataset(self.tree[m]["stein_diagnostics"].dataset, "perturbed_ksd")
            for m in self.methods
            if "perturbed_ksd" in self.tree[m]["stein_diagnostics"].dataset
        }

    @property
    def checks(self) -> dict[str, ModeCheck]:
        flags = self.flags
        out = {}
        for m in self.methods:
            ds = self.tree[m]["stein_diagnostics"].dataset
            out[m] = ModeCheck(
                m, ds["expected_mass"].values, ds["expected_mass_se"].values, ds["observed_mass"].values,
                ds["ess"].values, ds["mass_pvalue"].values, float(ds.attrs["unknown_share"]),
                tuple(f for f in flags if f.method == m),
                transitions=ds["transitions"].values if "transitions" in ds else None,
                basin_rhat=ds["basin_rhat"].values if "basin_rhat" in ds else None,
                mixing=bool(ds.attrs["mixing"]),
            )
        return out

    def to_datatree(self, method: str) -> xr.DataTree:
        """The method's DataTree: ``posterior``, ``sample_stats`` (NUTS), ``stein_diagnostics``."""
        if method not in self.methods:
            raise KeyError(f"no method {method!r} in this report; it has {self.methods}.")
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
        if method not in self.methods:
            raise KeyError(f"no method {method!r} in this report; it has {self.methods}.")
        node = self.tree[method]
        if "repair" not in node.children:
            reason = node["stein_diagnostics"].attrs.get("repair_failed", "the report was saved without them")
            raise ValueError(f"this report holds no repaired draws for {method!r}: {reason}")
        return xr.DataTree(children={
            "posterior": xr.DataTree(dataset=node["repaired_posterior"].dataset.copy()),
            "repair": xr.DataTree(dataset=node["repair"].dataset.copy()),
        })

    # ------------------------------------------------------------------ text
    def summary(self) -> str:
        """Stages that did not go as planned, then a table per method (expected mass against observed
        share per mode, KSD), then the flags in words."""
        modes = self.modes
        masses = (f"masses by {modes.mass_method} (Pareto k = {modes.pareto_k:.2f}, unknown mass "
                  f"{modes.unknown_mass:.1%})" if modes.mass_method != "none" else "masses not estimated")
        lines = [f"numpyro_stein_diag report: {len(modes)} mode(s), {masses}", ""]
        problems = [s for s in self.stages if not s.ok]
        if problems:
            lines += ["Stages that did not go as planned:"] + [f"  {s}" for s in problems] + [""]
        perturbed = self.perturbed_ksd
        for m, check in self.checks.items():
            test = self.ksd[m]
            ksd_text = f"KSD p = {test.pvalue:.3f}"
            if m in perturbed:
                ksd_text += f", perturbed KSD p = {perturbed[m].pvalue:.3f}"
            lines.append(f"{m}: {self.runs[m].draws.shape[0]} chain(s) x {self.runs[m].draws.shape[1]} draws, "
                         f"{ksd_text} ({test.bootstrap} bootstrap)")
            if check.transitions is not None and len(modes) > 1:
                verdict = ("mixing: shares judged with the basin indicators' ESS" if check.mixing else
                           "NOT mixing: shares judged against the masses' se alone")
                lines.append(f"  {mixing_text(check.transitions, check.basin_rhat)} -> {verdict}")
            if len(modes):
                lines += self._mode_rows(check)
            lines.append("")
        flags = self.flags
        if flags:
            lines.append("Flags:")
        elif self.complete:
            lines.append("No flags: every method's draws match the mode masses.")
        else:
            lines.append("No flags, but not every check could run (stages above).")
        lines += [f"  [{f.kind}] {f.message}" for f in flags]
        lines += self._repair_lines()
        return "\n".join(lines)

    @staticmethod
    def _mode_rows(check: ModeCheck) -> list[str]:
        """One row per mode: expected mass, observed share, ESS, p and flag (blank where not judged)."""
        lines = [f"  {'mode':>4} {'expected':>16} {'observed':>9} {'ESS':>7} {'p':>8}  flag"]
        kinds = {f.mode: f.kind for f in check.flags if f.mode >= 0}
        for j in range(len(check.expected)):
            expected = (f"{check.expected[j]:9.1%} +- {check.expected_se[j]:4.1%}"
                        if np.isfinite(check.expected[j]) else f"{'not estimated':>16}")
            pvalue = f"{check.pvalue[j]:8.2g}" if np.isfinite(check.pvalue[j]) else f"{'':>8}"
            lines.append(f"  {j:>4} {expected} {check.observed[j]:9.1%} {check.ess[j]:7.0f} {pvalue}  "
                         f"{kinds.get(j, '')}")
        if check.unknown_share:
            lines.append(f"  {'none':>4} {'':>16} {check.unknown_share:9.1%}  (draws in no mode's basin)")
        return lines

    def _repair_lines(self) -> list[str]:
        """Per method: own draws kept, draws filled in, and the fill-in's worst Pareto k."""
        lines = ["", "Repaired posteriors, each basin at its mass (report.repaired(method)):"]
        for m in self.methods:
            node = self.tree[m]
            if "repair" not in node.children:
                lines.append(f"  {m}: none ({node['stein_diagnostics'].attrs.get('repair_failed', 'not saved')})")
                continue
            ds = node["repair"].dataset
            filled = int(ds["draws_filled"].sum())
            text = f"  {m}: kept {int(ds['draws_kept'].sum()) + int(ds.attrs['unknown_kept'])} own draws"
            if filled:
                text += (f", filled {filled} by importance resampling (Pareto k up to "
                         f"{float(ds['fill_pareto_k'].max()):.2f})")
            lines.append(text)
        return lines

    def __repr__(self) -> str:
        return self.summary()

    # ------------------------------------------------------------------ tables
    def to_dataframe(self) -> pd.DataFrame:
        """One row per (method, mode): the mode's location, its expected mass and se, the method's
        observed share, the share's ESS and p-value, and the flags on it; each row also carries the
        method's KSD p-values and whether its chains mix. A report without modes has one row per
        method with ``mode = -1``."""
        ksd, perturbed, modes = self.ksd, self.perturbed_ksd, self.modes
        rows = []
        for m, check in self.checks.items():
            method_columns = {"ksd_pvalue": ksd[m].pvalue,
                              "perturbed_ksd_pvalue": perturbed[m].pvalue if m in perturbed else np.nan,
                              "mixing": check.mixing}
            for j in range(len(check.expected)) or (-1,):
                known = j >= 0
                rows.append({
                    "method": m, "mode": j, "location": modes.location_text(j) if known else "",
                    "expected_mass": check.expected[j] if known else np.nan,
                    "expected_mass_se": check.expected_se[j] if known else np.nan,
                    "observed_share": check.observed[j] if known else np.nan,
                    "ess": check.ess[j] if known else np.nan,
                    "pvalue": check.pvalue[j] if known else np.nan,
                    "flags": ", ".join(f.kind for f in check.flags if f.mode == j),
                    **method_columns,
                })
        return pd.DataFrame(rows).set_index(["method", "mode"])

    def _repr_html_(self) -> str:
        """The summary for notebooks: stages that did not go as planned, the per-method table with
        flagged rows highlighted, and the flags in words."""
        modes = self.modes
        parts = [f"<div><b>numpyro_stein_diag report</b>: {len(modes)} mode{'s' * (len(modes) != 1)}, "
                 + (f"masses by {modes.mass_method}" if modes.mass_method != "none" else "masses not estimated")]
        problems = [s for s in self.stages if not s.ok]
        if problems:
            parts.append("<ul>" + "".join(
                f"<li style='color:{'#b00' if s.status == 'failed' else '#a60'}'><b>{html.escape(s.name)}: "
                f"{s.status}</b> - {html.escape(s.reason)}</li>" for s in problems) + "</ul>")
        if self.methods:
            table = self.to_dataframe().reset_index()
            header = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
            body = "".join(
                f"<tr style='background:{'#fdd' if row.flags else 'transparent'}'>"
                + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>"
                for row in table.itertuples(index=False))
            parts.append(f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>")
        flags = self.flags
        verdict = ("No flags." if self.complete else "No flags, but not every check could run.") if not flags else "Flags:"
        parts.append(f"<p><b>{verdict}</b></p>")
        if flags:
            parts.append("<ul>" + "".join(f"<li><b>{html.escape(f.kind)}</b>: {html.escape(f.message)}</li>"
                                          for f in flags) + "</ul>")
        return "".join(parts) + "</div>"

    # ------------------------------------------------------------------ pictures
    def plot(self, out_dir=None) -> dict:
        """The plots, ``{"mode_mass", "ksd", "methods"}: PlotCollection`` (none without a method,
        ``mode_mass`` only when a mode was found); with ``out_dir`` each is saved there as
        ``<name>.png`` as soon as it is drawn.

        A picture that cannot be drawn or saved does not stop the others: it is left out of
        the result, and ``self.plot_failures`` (``{name: "ErrorType: reason"}``, reset at each
        call) says why.
        """
        from pathlib import Path

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
    def load(cls, path) -> "Report":
        """Read a report written by :meth:`save`; it compares equal to the saved one."""
        with xr.open_datatree(path, engine="h5netcdf") as tree:
            tree = tree.load()
        if tree.attrs.get("package") != "numpyro_stein_diag":
            raise ValueError(f"{path} is not a numpyro_stein_diag report (no 'package' attribute).")
        return cls(tree)

    def __eq__(self, other) -> bool:
        return isinstance(other, Report) and self.tree.identical(other.tree)


# ---------------------------------------------------------------------- to the tree
FLAG_FIELDS = tuple(f.name for f in dataclasses.fields(Flag))


def _flags_dataset(flags: list[Flag]) -> xr.Dataset:
    """Flags as variables along a ``flag`` dim, so that xarray can select them (``ds.kind == ...``)."""
    columns = {name: [getattr(f, name) for f in flags] for name in FLAG_FIELDS}
    dtypes = {"method": str, "kind": str, "message": str, "mode": np.int64}
    return xr.Dataset({name: ("flag", np.array(values, dtype=dtypes.get(name, np.float64)))
                       for name, values in columns.items()})


def _cell(value) -> str:
    """A table cell for people: floats to 3 significant digits, NaN blank."""
    if isinstance(value, float | np.floating):
        return "" if np.isnan(value) else f"{value:.3g}"
    return str(value)


def _scalar(value):
    """A numpy scalar as the Python value a Flag holds."""
    return value.item() if hasattr(value, "item") else value


def _modes_tree(modes: Modes) -> xr.DataTree:
    dims = {"location": ("mode", "param"), "hessian": ("mode", "param", "param_")}
    ds = xr.Dataset(
        {v: (dims.get(v, ("mode",)), np.asarray(getattr(modes, v))) for v in MODE_VARS},
        attrs={"pareto_k": float(modes.pareto_k), "unknown_mass": float(modes.unknown_mass),
               "mass_method": str(modes.mass_method), "runaway": modes.runaway},
    )
    return xr.DataTree(dataset=ds, children={"values": xr.DataTree(dataset=mode_values_dataset(modes.values))})


def _ksd_vars(test: KSDTest, prefix: str) -> tuple[dict, dict]:
    """Variables and attrs that hold one KSD test under ``prefix`` (``ksd`` or ``perturbed_ksd``)."""
    variables = {prefix: ((), test.statistic), f"{prefix}_pvalue": ((), test.pvalue)}
    attrs = {
        f"{prefix}_n": test.n, f"{prefix}_bootstrap": test.bootstrap,
        f"{prefix}_num_bootstrap": test.num_bootstrap, f"{prefix}_kernel": type(test.kernel).__name__,
        f"{prefix}_kernel_params": json.dumps(dataclasses.asdict(test.kernel)),
        f"{prefix}_lengthscale": test.lengthscale, f"{prefix}_statistic_type": test.statistic_type,
        f"{prefix}_variant": test.variant, f"{prefix}_standardized": int(test.standardized),
    }
    return variables, attrs


def _method_tree(run: Run, check: ModeCheck, test: KSDTest, perturbed: KSDTest | None,
                 repair: Repair | str | None) -> xr.DataTree:
    if run.mcmc is not None:
        full = arviz_base.from_numpyro(run.mcmc)
        groups = {g: full[g].dataset for g in ("posterior", "sample_stats") if g in full.children}
    elif run.groups:
        groups = dict(run.groups)
    else:
        samples = {k: np.asarray(v) for k, v in run.samples.items()}
        groups = {"posterior": arviz_base.from_dict({"posterior": samples})["posterior"].dataset}
    modes = np.arange(len(check.expected))

    def flagged(kind):
        return np.array([any(f.kind == kind and f.mode == j for f in check.flags) for j in modes], np.int8)

    diag, attrs = _ksd_vars(test, "ksd")
    if perturbed is not None:
        more, more_attrs = _ksd_vars(perturbed, "perturbed_ksd")
        diag, attrs = {**diag, **more}, {**attrs, **more_attrs}
    diag.update({
        "expected_mass": (("mode",), check.expected),
        "expected_mass_se": (("mode",), check.expected_se),
        "observed_mass": (("mode",), check.observed),
        "ess": (("mode",), check.ess),
        "mass_pvalue": (("mode",), check.pvalue),
        "missed": (("mode",), flagged("missed_mode")),
        "misweighted": (("mode",), flagged("misweighted_mode")),
        "unconstrained_draws": (("chain", "draw", "param"), np.asarray(run.draws)),
    })
    if check.transitions is not None:
        diag["transitions"] = (("chain",), np.asarray(check.transitions))
        diag["basin_rhat"] = (("mode",), np.asarray(check.basin_rhat))
    for key, value in run.history.items():
        diag[f"history_{key}"] = (("checkpoint",) if key.startswith("ksd") else ("step",), np.asarray(value))
    attrs.update({"independent": int(run.independent), "unknown_share": float(check.unknown_share),
                  "mixing": int(check.mixing)})
    if isinstance(repair, str):
        attrs["repair_failed"] = repair
    groups["stein_diagnostics"] = xr.Dataset(diag, coords={"mode": modes}, attrs=attrs)
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
        attrs={"unknown_kept": int(repair.unknown_kept), "fill_method": repair.fill_method,
               "order": "shuffled: chain and draw carry no time order"},
    )


# ---------------------------------------------------------------------- from the tree
def _ksd_from_dataset(ds: xr.Dataset, prefix: str) -> KSDTest:
    a = {k.removeprefix(prefix + "_"): v for k, v in ds.attrs.items() if k.startswith(prefix + "_")}
    kernel = KERNELS[a["kernel"]](**json.loads(a["kernel_params"]))
    return KSDTest(
        statistic=float(ds[prefix]), pvalue=float(ds[f"{prefix}_pvalue"]), n=int(a["n"]),
        bootstrap=str(a["bootstrap"]), num_bootstrap=int(a["num_bootstrap"]), kernel=kernel,
        lengthscale=float(a["lengthscale"]), statistic_type=str(a["statistic_type"]), variant=str(a["variant"]),
        standardized=bool(a["standardized"]),
    )


def _runs_from_tree(tree: xr.DataTree) -> dict[str, Run]:
    runs = {}
    for m in json.loads(tree.attrs["methods"]):
        ds = tree[m]["stein_diagnostics"].dataset
        history = {k.removeprefix("history_"): v.values for k, v in ds.data_vars.items() if k.startswith("history_")}
        posterior = tree[m]["posterior"].dataset
        runs[m] = Run(
            method=m,
            draws=ds["unconstrained_draws"].values,
            samples={k: v.values for k, v in posterior.data_vars.items()},
            history=history,
            independent=bool(ds.attrs["independent"]),
        )
    return runs
