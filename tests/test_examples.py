"""Every example runs as a script, at small sizes, and says what it claims."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # each example is a whole audit run as a script

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paper_figure1(tmp_path):
    pvalues = load("paper_figure1").main(["--repeats", "3", "--n", "300", "--out", str(tmp_path / "f1.png")])
    assert (tmp_path / "f1.png").stat().st_size > 10000
    assert np.all(pvalues["left mode, too wide: N(-4, 1.5^2)"] < 0.05)


def test_paper_figure2(tmp_path):
    results = load("paper_figure2").main(["--quick", "--steps", "300", "--out", str(tmp_path / "f2.png")])
    assert (tmp_path / "f2.png").stat().st_size > 10000
    runs = results[0.5, -2.0, 1.0]
    assert np.mean(runs["plain"] < 0) > 0.8  # plain SVGD keeps its start's proportions


def test_label_switching(tmp_path):
    reports = load("label_switching").main(["--draws", "200", "--out", str(tmp_path)])
    assert len(reports["canonical"].modes) == 1 and reports["canonical"].ok
    assert len(reports["as_is"].modes) == 2
    assert (tmp_path / "canonical" / "mode_mass.png").exists()


def test_squared_parameter(tmp_path):
    report = load("squared_parameter").main(["--chains", "4", "--draws", "200", "--out", str(tmp_path)])
    assert len(report.modes) == 2
    assert (tmp_path / "methods.png").exists()


def test_stuck_chains(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))  # the example imports its sibling examples, as a script does
    results = load("stuck_chains").main(["--draws", "100", "--out", str(tmp_path)])
    before, after = results["label_switching"]
    assert {f.kind for f in before.flags} >= {"misweighted_mode"}
    assert not {f.kind for f in after.flags if f.method == "repaired"} & {"missed_mode", "misweighted_mode"}
    missed, repaired = results["missed_mode"]
    assert "missed_mode" in {f.kind for f in missed.flags}
    assert not {f.kind for f in repaired.flags if f.method == "repaired"} & {"missed_mode", "misweighted_mode"}
    assert (tmp_path / "label_switching_mode_mass.png").exists()
