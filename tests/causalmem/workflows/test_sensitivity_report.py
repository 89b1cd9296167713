"""The HonestDiD section of the HTML report."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("altair")
pytest.importorskip("vl_convert")

from causalmem.workflows.family import FamilyConfig, build_family  # noqa: E402
from causalmem.workflows.report import build_report  # noqa: E402
from tests.causalmem.builders import family_frame, write_family_files  # noqa: E402


@pytest.mark.slow
def test_report_has_a_sensitivity_section(tmp_path: Path) -> None:
    frame = family_frame(n_per=15, n_never=40, seed=2)
    toml = write_family_files(tmp_path, frame, peaks=(4e-3, 2e-3), biters=49)
    build_family(FamilyConfig.from_toml(toml), tmp_path / "fam", log=lambda m: None)
    out = tmp_path / "report.html"
    build_report(tmp_path / "fam", out, biters=49, seed=1, command="t", sensitivity=True)
    page = out.read_text()
    heads = re.findall(r"<h2 id=\"s\d+\">(.*?)</h2>", page)
    assert heads[-2:] == ["Sensitivity to parallel-trends violations (HonestDiD)", "Provenance"]
    assert "Instantaneous effect: original CI and breakdown M" in page
    assert page.count("<svg") == 9 + 2  # one sensitivity plot per model
    assert "<script" not in page.lower()
