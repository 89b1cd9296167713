"""The HTML report: builds from a tiny family or a folder of panels and is self-contained."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("altair")
pytest.importorskip("vl_convert")

from causalmem.panel.io import write_panel  # noqa: E402
from causalmem.panel.panel import Panel  # noqa: E402
from causalmem.workflows.family import FamilyConfig, build_family  # noqa: E402
from causalmem.workflows.report import build_report, load_panels  # noqa: E402
from tests.causalmem.builders import family_frame, write_family_files  # noqa: E402


def _self_contained(page: str) -> None:
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "<link" not in page.lower() and "@import" not in page


@pytest.fixture(scope="module")
def family_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rep")
    frame = family_frame(n_per=15, n_never=40, seed=2)
    toml = write_family_files(root, frame, peaks=(4e-3, 2e-3), biters=49)
    build_family(FamilyConfig.from_toml(toml), root / "fam", log=lambda m: None)
    return root / "fam"


def test_report_from_a_family_is_self_contained(family_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "report.html"
    extra = ("Ground truth", "<p id='gt'>validation goes here</p>")
    path = build_report(family_dir, out, sections=[extra], biters=49, seed=1, command="test cmd")
    assert path == out and out.exists()
    page = out.read_text()
    _self_contained(page)
    heads = re.findall(r"<h2 id=\"s\d+\">(.*?)</h2>", page)
    assert heads == [
        "Summary",
        "Figures",
        "Tables",
        "Findings (i)-(iii)",
        "Diagnostics",
        "Provenance",
        "Ground truth",
    ]
    assert "<p id='gt'>validation goes here</p>" in page
    # figures are inline SVG: heat-maps (2), path, LR overlay, persistent, residual,
    # two correlation matrices, prediction
    assert page.count("<svg") == 9
    assert "Pre-trend (placebo) cells and joint Wald test per model" in page
    assert "reproduces_paper_fig6" in page and "test cmd" in page
    assert "causalmem_version" in page and "pyarrow_version" in page  # panel parquet metadata
    assert "No scoring manifest found" in page  # file members have none
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]  # atomic: no temp left


def test_report_from_a_folder_of_panels(tmp_path: Path) -> None:
    frame = family_frame(scales=(1.0,), peaks=(3e-3,), n_per=12, n_never=30, seed=3)
    sub = frame[["unit", "step", "cohort", "logprob_0"]].rename(columns={"logprob_0": "logprob"})
    panel = Panel.from_frame(
        sub, unit="unit", step="step", cohort="cohort", outcomes="logprob", meta={"model": "only"}
    )
    write_panel(panel, tmp_path / "only.parquet")
    fam = load_panels(tmp_path)
    assert fam.names == ("only",)
    out = build_report(tmp_path, tmp_path / "r.html", biters=29)
    page = out.read_text()
    _self_contained(page)
    assert "Findings (i)-(iii)" not in page  # one model: no cross-model findings
    assert page.count("<svg") == 5  # no LR schedule known, no correlations
    with pytest.raises(FileNotFoundError, match="No causalmem panel"):
        load_panels(_empty(tmp_path))


def _empty(root: Path) -> Path:
    d = root / "empty"
    d.mkdir()
    return d


def test_cli_report(family_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from causalmem.cli import app

    out = tmp_path / "cli.html"
    res = CliRunner().invoke(app, ["report", str(family_dir), "--out", str(out), "--biters", "19"])
    assert res.exit_code == 0, res.output
    page = out.read_text()
    _self_contained(page)
    assert "holds" in page and "Provenance" in page


def test_read_section_title_body_and_refusals(tmp_path: Path) -> None:
    from causalmem.presentation.report import read_section

    f = tmp_path / "section.html"
    f.write_text("<h2>Validation &amp; truth</h2>\n<p>bias 0.2%</p>\n<svg></svg>\n")
    assert read_section(f) == ("Validation & truth", "<p>bias 0.2%</p>\n<svg></svg>\n")
    g = tmp_path / "plain.html"
    g.write_text("<p>no title</p>")
    assert read_section(g) == ("plain", "<p>no title</p>")
    bad = tmp_path / "bad.html"
    bad.write_text('<h2>x</h2><script src="https://cdn.example/vega.js"></script>')
    with pytest.raises(ValueError, match="self-contained"):
        read_section(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_section(tmp_path / "missing.html")
