"""The ``numpyro-stein-diag`` command (also ``python -m numpyro_stein_diag``).

Exit codes: 0 no flags, 1 the check raised flags, 2 bad arguments or input, 3 no flags but
a stage could not run (the summary's "Stages" lines say which and why). A picture that cannot
be drawn is named on stderr with the reason; it does not change the exit code.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import sys
from pathlib import Path

EXIT_OK, EXIT_FLAGS, EXIT_ERROR, EXIT_INCOMPLETE = 0, 1, 2, 3


def _exit_code(report) -> int:
    if not report.ok:
        return EXIT_FLAGS
    return EXIT_OK if report.complete else EXIT_INCOMPLETE


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


def _named_samples(specs: list[str]) -> dict:
    """``[NAME=]PATH`` arguments as ``{name: DataTree}``; the name defaults to the file's stem."""
    named = [spec.split("=", 1) if _has_name(spec) else (Path(spec).stem, spec) for spec in specs]
    names = [name for name, _ in named]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"two samples files are named {twice[0]!r}; name them apart with NAME=PATH.")
    return {name: _load_posterior(path) for name, path in named}


def _has_name(spec: str) -> bool:
    """``NAME=PATH`` rather than a path with an ``=`` in it (``runs/seed=1.nc``)."""
    name, sep, _ = spec.partition("=")
    return bool(sep) and "/" not in name and not Path(spec).exists()


def _method_settings(methods: tuple[str, ...], settings: list[str]) -> dict:
    """``METHOD.SETTING=VALUE`` arguments as ``{method: {setting: value}}`` (values read as Python literals)."""
    out = {m: {} for m in methods}
    for spec in settings:
        key, sep, text = spec.partition("=")
        method, dot, setting = key.partition(".")
        if not sep or not dot:
            raise ValueError(f"expected METHOD.SETTING=VALUE, got {spec!r} (e.g. svgd_annealed.sigma_max=2.0).")
        if method not in out:
            raise ValueError(f"--set {spec!r}: method {method!r} is not run; run it with --methods {method}.")
        try:
            out[method][setting] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[method][setting] = text
    return out


def _check(args) -> int:
    from .diagnose import METHODS, diagnose

    if args.compilation_cache:
        from .compilation import enable_compilation_cache

        enable_compilation_cache(args.compilation_cache)
    model, model_args, model_kwargs = _load_model(args.model)
    samples = _named_samples(args.samples)
    methods = tuple(args.methods) if args.methods is not None else (() if samples else tuple(METHODS))
    methods = _method_settings(methods, args.set)
    report = diagnose(
        model, *model_args, samples=samples, methods=methods, independent=args.independent, **model_kwargs
    )
    print(report.summary())
    out = Path(args.out) if args.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
        report.save(out / "report.nc")
        print(f"\nwrote {out / 'report.nc'}")
    if args.repaired:
        _write_repaired(report, Path(args.repaired))
    if out:  # the pictures last: the files above never wait on them
        _draw(report, out, args.command)
    return _exit_code(report)


def _draw(report, out: Path, command: str) -> None:
    """Save the report's pictures in ``out``; one line on stderr for each that could not be drawn."""
    drawn = report.plot(out)
    if drawn:
        print(f"wrote {', '.join(f'{name}.png' for name in drawn)} in {out}/")
    for name, reason in report.plot_failures.items():
        print(f"numpyro-stein-diag {command}: could not draw {name}.png: {reason}", file=sys.stderr)


def _write_repaired(report, folder: Path) -> None:
    """One ArviZ netCDF file per method, ``<method>.nc``: the repaired posterior and its repair group."""
    folder.mkdir(parents=True, exist_ok=True)
    for method in report.methods:
        try:
            repaired = report.repaired(method)
        except ValueError as err:  # no masses, so no repair: said, not fatal
            print(f"no repaired posterior for {method}: {err}")
            continue
        path = folder / f"{method.replace('/', '_')}.nc"
        repaired.to_netcdf(path, engine="h5netcdf")
        print(f"wrote the repaired posterior of {method} to {path}")


def _show(args) -> int:
    from .report import Report

    if not Path(args.report).is_file():
        raise FileNotFoundError(f"report file {args.report} does not exist.")
    report = Report.load(args.report)
    print(report.summary())
    out = Path(args.out) if args.out else Path(args.report).with_suffix("").with_name(Path(args.report).stem + "_plots")
    print()
    _draw(report, out, args.command)
    return _exit_code(report)


def _demo(args) -> int:
    from .demo import run_demo

    run_demo(out_dir=args.out, quick=args.quick)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="numpyro-stein-diag",
        description="Check posterior samples for missed and misweighted modes. "
        "Exit codes: 0 no flags, 1 flags raised, 2 bad input, 3 no flags but a stage could not run.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="the KSD's blindness, then diagnose() on a two-mode mixture")
    demo.add_argument("--out", default="stein_diag_demo", help="folder for report.nc and the PNGs")
    demo.add_argument("--quick", action="store_true", help="small runs (seconds, for a smoke test)")
    demo.set_defaults(run=_demo)
    check = commands.add_parser("check", help="audit a model against saved samples or the package's runs")
    check.add_argument("model", help="MODEL_FILE:FUNCTION; the file's model_args / model_kwargs are passed")
    check.add_argument(
        "--samples",
        nargs="*",
        default=[],
        metavar="[NAME=]PATH",
        help="ArviZ netCDF files with a posterior group, each named in the report by NAME (default: the file's stem)",
    )
    check.add_argument(
        "--independent",
        nargs="*",
        default=[],
        metavar="NAME",
        help="samples whose draws are independent, not Markov chains (e.g. exact draws saved "
        "as one chain); a posterior attribute independent=1 says the same",
    )
    check.add_argument(
        "--methods",
        nargs="*",
        default=None,
        help="nuts svgd svgd_annealed svgd_tempered (default: none with --samples, else all)",
    )
    check.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="METHOD.SETTING=VALUE",
        help="a setting of a method run, e.g. svgd_annealed.step_size=0.01 (repeatable)",
    )
    check.add_argument("--out", help="folder for report.nc and the plots")
    check.add_argument(
        "--repaired",
        metavar="DIR",
        help="folder for one netCDF posterior per method, reweighted so each mode holds its mass",
    )
    check.add_argument(
        "--compilation-cache",
        metavar="DIR",
        help="keep compiled programs in DIR so that the next check of the same model "
        "skips most compilation (JAX's persistent cache; off unless given)",
    )
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
