"""The ``numpyro-stein-diag`` command (also ``python -m numpyro_stein_diag``).

Exit codes: 0 no flags, 1 the check raised flags, 2 bad arguments or input.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

EXIT_OK, EXIT_FLAGS, EXIT_ERROR = 0, 1, 2


def _load_model(spec: str):
    """``path/to/file.py:function`` -> (model, model_args, model_kwargs) from the file's globals."""
    path, _, name = spec.rpartition(":")
    if not path or not name:
        raise ValueError(f"expected MODEL_FILE:FUNCTION, got {spec!r} (e.g. models.py:model).")
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"model file {file} does not exist.")
    module_spec = importlib.util.spec_from_file_location(file.stem, file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    model = getattr(module, name, None)
    if not callable(model):
        raise AttributeError(f"{file} has no function {name!r}.")
    return model, tuple(getattr(module, "model_args", ())), dict(getattr(module, "model_kwargs", {}))


def _load_posterior(path: str):
    import xarray as xr

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"samples file {file} does not exist.")
    with xr.open_datatree(file, engine="h5netcdf") as tree:
        tree = tree.load()
    if "posterior" not in tree.children:
        raise ValueError(f"{file} has no 'posterior' group; save an ArviZ DataTree with dt.to_netcdf().")
    return tree


def _check(args) -> int:
    from .diagnose import METHODS, diagnose

    model, model_args, model_kwargs = _load_model(args.model)
    samples = {Path(p).stem: _load_posterior(p) for p in args.samples}
    methods = tuple(args.methods) if args.methods is not None else (() if samples else tuple(METHODS))
    report = diagnose(model, *model_args, samples=samples, methods=methods, **model_kwargs)
    print(report.summary())
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        report.save(out / "report.nc")
        report.plot(out)
        print(f"\nwrote {out / 'report.nc'} and the plots in {out}/")
    if args.repaired:
        _write_repaired(report, Path(args.repaired))
    return EXIT_OK if report.ok else EXIT_FLAGS


def _write_repaired(report, folder: Path) -> None:
    """One ArviZ netCDF file per method, ``<method>.nc``: the repaired posterior and its repair group."""
    folder.mkdir(parents=True, exist_ok=True)
    for method in report.methods:
        path = folder / f"{method.replace('/', '_')}.nc"
        report.repaired(method).to_netcdf(path, engine="h5netcdf")
        print(f"wrote the repaired posterior of {method} to {path}")


def _show(args) -> int:
    from .report import Report

    if not Path(args.report).is_file():
        raise FileNotFoundError(f"report file {args.report} does not exist.")
    report = Report.load(args.report)
    print(report.summary())
    out = Path(args.out) if args.out else Path(args.report).with_suffix("").with_name(Path(args.report).stem + "_plots")
    report.plot(out)
    print(f"\nplots in {out}/")
    return EXIT_OK if report.ok else EXIT_FLAGS


def _demo(args) -> int:
    from .demo import run_demo

    run_demo(out_dir=args.out, quick=args.quick)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="numpyro-stein-diag",
        description="Check posterior samples for missed and misweighted modes. "
        "Exit codes: 0 no flags, 1 flags raised, 2 bad input.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="the KSD's blindness, then diagnose() on a two-mode mixture")
    demo.add_argument("--out", default="stein_diag_demo", help="folder for report.nc and the PNGs")
    demo.add_argument("--quick", action="store_true", help="small runs (seconds, for a smoke test)")
    demo.set_defaults(run=_demo)
    check = commands.add_parser("check", help="audit a model against saved samples or the package's runs")
    check.add_argument("model", help="MODEL_FILE:FUNCTION; the file's model_args / model_kwargs are passed")
    check.add_argument("--samples", nargs="*", default=[], help="ArviZ netCDF files with a posterior group")
    check.add_argument("--methods", nargs="*", default=None,
                       help="nuts svgd svgd_annealed svgd_tempered (default: none with --samples, else all)")
    check.add_argument("--out", help="folder for report.nc and the plots")
    check.add_argument("--repaired", metavar="DIR",
                       help="folder for one netCDF posterior per method, reweighted so each mode holds its mass")
    check.set_defaults(run=_check)
    show = commands.add_parser("show", help="print the summary and draw the plots of a saved report")
    show.add_argument("report", help="a report.nc written by Report.save or check --out")
    show.add_argument("--out", help="folder for the plots (default: REPORT_plots next to the file)")
    show.set_defaults(run=_show)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (FileNotFoundError, AttributeError, ValueError, TypeError) as err:
        print(f"numpyro-stein-diag {args.command}: error: {err}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
