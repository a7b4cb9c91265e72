"""The report in words: one summary, built once from the report's table, written as text or HTML.

Numbers say what they can, and no more:

- a mass is shown with its +-2 se interval cut to [0, 100%] (``80.3% (79.1-81.5%)``), and a
  single mode as "the only mode" (it holds all the mass the modes hold by construction);
- a share is the share of the draws that lie in some mode's basin, the same denominator as
  the masses; draws in no basin are counted on a line of their own, out of all draws;
- ``ESS`` is the effective number of draws in the basin (the basin indicator's ESS times the
  share), so 6 independent draws in a basin read 6; "-" for chains that do not mix between
  modes, whose shares are judged against the masses' se alone;
- a p-value is shown to two digits and never below what its test can resolve (``< 0.001``
  for the share tests, ``<= 1/(B + 1)`` for a bootstrap with ``B`` replicates), and not at all
  where nothing is tested (one mode, masses not estimated);
- modes are named by their location when it is short, else by the coordinates that set them
  apart most (:func:`~numpyro_stein_diag.modes.mode_labels`).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .check import Flag, format_pvalue, mixing_text
from .stages import Stage

if TYPE_CHECKING:
    from .report import Report

__all__ = ["summary_text", "summary_html", "format_mass"]

COLUMNS = ("mode", "mass (+-2 se)", "share", "ESS", "p", "flag")


def format_bootstrap_pvalue(p: float, num_bootstrap: int) -> str:
    """A bootstrap p-value :math:`(1 + \\#\\{S^*_b \\ge S\\}) / (B + 1)` is at least ``1 / (B + 1)``:
    at that floor it says only ``<= 1/(B + 1)``."""
    floor = 1.0 / (num_bootstrap + 1)
    return f"<= {floor:.2g}" if p <= floor * (1 + 1e-9) else f"{p:.2g}"


def format_mass(mass: float, se: float) -> str:
    """``"80.3% (79.1-81.5%)"``: the mass and its +-2 se interval, cut to [0, 100%]."""
    if not (np.isfinite(mass) and np.isfinite(se)):
        return "not estimated"
    low, high = max(mass - 2 * se, 0.0), min(mass + 2 * se, 1.0)
    return f"{mass:.1%} ({100 * low:.1f}-{100 * high:.1f}%)"


# ---------------------------------------------------------------------- the summary, once
@dataclass
class MethodBlock:
    """One method's part of the summary: a title, notes, and its table (formatted cells)."""

    title: str
    notes: list[str]
    rows: list[tuple[str, ...]]
    flagged: list[bool]
    footnote: str = ""


@dataclass
class Summary:
    """What the report says, before it is written as text or HTML."""

    headline: str
    problems: list[Stage]
    blocks: list[MethodBlock]
    verdict: str
    flags: list[Flag] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)


def summarize(report: Report) -> Summary:
    """The summary of ``report``: every number comes from :meth:`Report.to_dataframe` or the tree."""
    modes, estimate = report.modes, report.masses
    masses = (
        f"masses by {estimate.mass_method} (Pareto k = {estimate.pareto_k:.2f}, unknown mass "
        f"{estimate.unknown_mass:.1%})"
        if estimate.estimated
        else "masses not estimated"
    )
    table = report.to_dataframe() if report.methods else None
    blocks = [_method_block(report, m, table.loc[m]) for m in report.methods]
    flags = report.flags
    if flags:
        verdict = "Flags:"
    elif report.complete:
        verdict = "No flags: every method's draws match the mode masses."
    else:
        verdict = "No flags, but not every check could run (stages above)."
    return Summary(
        headline=(
            f"numpyro_stein_diag report: {len(modes)} mode{'s' * (len(modes) != 1)}{_search_text(modes)}, {masses}"
        ),
        problems=[s for s in report.stages if not s.ok],
        blocks=blocks,
        verdict=verdict,
        flags=flags,
        repairs=_repair_lines(report),
    )


def _search_text(modes) -> str:
    """`` (search: 130 converged ascents, chance of an unseen mode 0.8%)``, or nothing when not known or
    when no ascent converged (the modes stage says why)."""
    if not np.isfinite(modes.unseen_chance) or np.sum(modes.start_counts) == 0:
        return ""
    return (
        f" (search: {int(np.sum(modes.start_counts))} converged ascents, chance of an unseen mode "
        f"{modes.unseen_chance:.1%})"
    )


def _method_block(report: Report, method: str, rows) -> MethodBlock:
    posterior = report.tree[method]["posterior"].dataset
    diag = report.diagnostics(method)
    chains, draws = posterior.sizes.get("chain", 1), posterior.sizes.get("draw", 0)
    tests = report.tests(method)
    ksd = ", ".join(f"{name} {format_bootstrap_pvalue(t.pvalue, t.num_bootstrap)}" for name, t in tests.items())
    kind = "independent draws" if diag.attrs["independent"] else f"{chains} chain{'s' * (chains != 1)}"
    title = (
        f"{method}: {kind}, {chains * draws} draws"
        if diag.attrs["independent"]
        else f"{method}: {kind} x {draws} draws"
    ) + (f"; KSD test p: {ksd} ({tests['plain'].bootstrap} bootstrap)" if tests else "; no KSD test")
    check = report.checks[method]
    num_modes = len(check.expected_mass)
    notes = []
    if check.transitions is not None and num_modes > 1:
        verdict = (
            "mixing: shares judged with the basin indicators' ESS"
            if check.mixing
            else "NOT mixing: shares judged against the masses' se alone"
        )
        notes.append(f"{mixing_text(check.transitions, check.basin_rhat)} -> {verdict}")
    if num_modes == 0:
        return MethodBlock(title, notes, [], [])
    only = num_modes == 1
    judged_by_ess = check.mixing  # chains that do not mix are judged by the masses' se alone
    cells = [
        (
            r.label,
            "the only mode" if only else format_mass(r.expected_mass, r.expected_mass_se),
            f"{r.observed_share:.1%}",
            f"{r.basin_ess:.0f}" if judged_by_ess else "-",
            "" if only else format_pvalue(r.pvalue),
            r.flags,
        )
        for r in rows.itertuples()
    ]
    unknown = float(check.unknown_share)
    footnote = ""
    if unknown:
        total = chains * draws
        footnote = (
            f"{round(unknown * total)} of {total} draws ({unknown:.1%}) lie in no mode's basin; "
            "the shares above are of the others"
        )
    return MethodBlock(title, notes, cells, [bool(r.flags) for r in rows.itertuples()], footnote)


def _repair_lines(report: Report) -> list[str]:
    """Per method: own draws kept, draws filled in and the fill-in's worst Pareto k, or why none."""
    lines = []
    for m in report.methods:
        node = report.tree[m]
        if "repair" not in node.children:
            stage = report.stage("repair", m)
            reason = stage.reason if stage else "not saved"
            lines.append(f"{m}: none ({reason})")
            continue
        ds = node["repair"].dataset
        filled = int(ds["draws_filled"].sum())
        text = f"{m}: kept {int(ds['draws_kept'].sum()) + int(ds.attrs['unknown_kept'])} own draws"
        if filled:
            text += (
                f", filled {filled} by importance resampling (Pareto k up to {float(ds['fill_pareto_k'].max()):.2f})"
            )
        lines.append(text)
    return lines


# ---------------------------------------------------------------------- written out
def summary_text(report: Report) -> str:
    """The summary as plain text: the stages that did not go as planned, a table per method, the
    flags in words and the repaired posteriors."""
    summary = summarize(report)
    lines = [summary.headline, ""]
    if summary.problems:
        lines += ["Stages that did not go as planned:"] + [f"  {s}" for s in summary.problems] + [""]
    for block in summary.blocks:
        lines.append(block.title)
        lines += [f"  {note}" for note in block.notes]
        if block.rows:
            widths = [max(len(c), *(len(r[i]) for r in block.rows)) for i, c in enumerate(COLUMNS)]
            lines += ["  " + "  ".join(_aligned(cells, widths)).rstrip() for cells in [COLUMNS, *block.rows]]
        if block.footnote:
            lines.append(f"  {block.footnote}")
        lines.append("")
    lines.append(summary.verdict)
    lines += [f"  [{f.kind}] {f.message}" for f in summary.flags]
    lines += ["", "Repaired posteriors, each basin at its mass (report.repaired(method)):"]
    lines += [f"  {line}" for line in summary.repairs]
    if report.plot_failures:
        lines += ["", "Pictures that could not be drawn:"]
        lines += [f"  {name}.png: {reason}" for name, reason in report.plot_failures.items()]
    return "\n".join(lines)


def _aligned(cells, widths) -> list[str]:
    """Words (the mode's name, the flag) left-aligned, numbers right-aligned."""
    last = len(cells) - 1
    return [c.ljust(w) if i in (0, last) else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))]


def summary_html(report: Report) -> str:
    """The same summary for notebooks, with flagged rows highlighted."""
    summary = summarize(report)
    esc = html.escape
    parts = [f"<div><p><b>{esc(summary.headline)}</b></p>"]
    if summary.problems:
        parts.append(
            "<ul>"
            + "".join(
                f"<li style='color:{'#b00' if s.status == 'failed' else '#a60'}'><b>{esc(s.name)}: {s.status}</b>"
                f" - {esc(s.reason)}</li>"
                for s in summary.problems
            )
            + "</ul>"
        )
    for block in summary.blocks:
        parts.append(f"<p><b>{esc(block.title)}</b>" + "".join(f"<br>{esc(n)}" for n in block.notes) + "</p>")
        if block.rows:
            header = "".join(f"<th>{esc(c)}</th>" for c in COLUMNS)
            body = "".join(
                f"<tr style='background:{'#fdd' if flagged else 'transparent'}'>"
                + "".join(f"<td>{esc(c)}</td>" for c in row)
                + "</tr>"
                for row, flagged in zip(block.rows, block.flagged)
            )
            parts.append(f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>")
        if block.footnote:
            parts.append(f"<p><i>{esc(block.footnote)}</i></p>")
    parts.append(f"<p><b>{esc(summary.verdict)}</b></p>")
    if summary.flags:
        parts.append(
            "<ul>" + "".join(f"<li><b>{esc(f.kind)}</b>: {esc(f.message)}</li>" for f in summary.flags) + "</ul>"
        )
    parts.append("<p>Repaired posteriors: " + "; ".join(esc(line) for line in summary.repairs) + "</p></div>")
    return "".join(parts)
