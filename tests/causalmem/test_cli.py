"""Reliability of the ``causalmem`` command line (issue 13: items 3, 9, 10, 11, 13)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner, Result

import causalmem as cm
from causalmem.cli import _cli_advice, app
from causalmem.errors import FormulaError, PanelFileError
from causalmem.panel import Panel, read_panel, simulate_panel, write_panel


def _run(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def _lines(res: Result) -> list[str]:
    return [line for line in res.output.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def design() -> tuple[pd.DataFrame, Panel]:
    f = simulate_panel(n_never=40, units_per_cohort=8, seed=2).frame.copy()
    uid = f["unit"].to_numpy()
    f["w"] = 1.0 + (uid % 3)
    f["cl"] = uid % 7
    f["x"] = (uid % 5).astype(float)
    p = Panel.from_frame(
        f, unit="unit", step="step", cohort="cohort", outcomes="y",
        weights="w", clusters="cl", covariates="x",
    )  # fmt: skip
    return f, p


@pytest.fixture()
def stored(design: tuple[pd.DataFrame, Panel], tmp_path: Path) -> Path:
    return write_panel(design[1], tmp_path / "panel.parquet")


def _explicit(f: pd.DataFrame, **kw: object) -> pd.DataFrame:
    args: dict[str, object] = {"weightsname": "w", "clustervars": "cl", "xformla": "~ x"}
    args.update(kw)
    return cm.att_gt(f, "y", "step", "unit", "cohort", bstrap=False, **args).tidy()  # type: ignore[arg-type]


# ----------------------------------------------------------------- item 3: the stored design


def test_att_gt_on_a_panel_uses_stored_weights_clusters_and_covariates(
    design: tuple[pd.DataFrame, Panel],
) -> None:
    f, p = design
    res = cm.att_gt(p, bstrap=False)
    assert res.spec.weightsname == "w"
    assert res.spec.clustervars == ("cl",)
    assert res.spec.xformla == "~ x"
    exp = _explicit(f)
    np.testing.assert_allclose(res.tidy()["estimate"], exp["estimate"])
    np.testing.assert_allclose(res.tidy()["std_error"], exp["std_error"])
    # Explicit arguments still win; "~ 1" fits without the stored covariates.
    plain = cm.att_gt(p, bstrap=False, xformla="~ 1", clustervars="unit")
    np.testing.assert_allclose(
        plain.tidy()["std_error"], _explicit(f, xformla=None, clustervars=None)["std_error"]
    )


def test_cli_fit_matches_att_gt_on_the_same_file(
    design: tuple[pd.DataFrame, Panel], stored: Path, tmp_path: Path
) -> None:
    res = _run("fit", stored, "--out", tmp_path / "o", "--biters", "0")
    assert res.exit_code == 0, res.output
    assert "weights=w" in res.output and "'cl'" in res.output
    got = pd.read_parquet(tmp_path / "o" / "att_gt.parquet")
    exp = cm.att_gt(read_panel(stored), bstrap=False).tidy()
    np.testing.assert_allclose(got["estimate"], exp["estimate"])
    np.testing.assert_allclose(got["std_error"], exp["std_error"])


def test_cli_fit_overrides_reach_every_part_of_the_design(
    design: tuple[pd.DataFrame, Panel], stored: Path, tmp_path: Path
) -> None:
    f, _ = design
    res = _run(
        "fit", stored, "--out", tmp_path / "o", "--biters", "0", "--unweighted",
        "--clustervars", "unit", "--xformla", "~ 1", "--est-method", "reg",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    got = pd.read_parquet(tmp_path / "o" / "att_gt.parquet")
    exp = _explicit(f, weightsname=None, clustervars=None, xformla=None)
    np.testing.assert_allclose(got["std_error"], exp["std_error"])
    help_text = _run("fit", "--help").output
    for opt in ("--xformla", "--anticipation", "--est-method", "--weights", "--clustervars",
                "--alp", "--cband", "--drop-always-treated", "--min-e"):  # fmt: skip
        assert opt in help_text


def test_cli_fits_a_panel_saved_as_unbalanced(tmp_path: Path) -> None:
    sim = simulate_panel(n_never=40, units_per_cohort=8, seed=2, unbalanced_fraction=0.2)
    path = write_panel(sim.to_panel(), tmp_path / "unb.parquet")
    res = _run("fit", path, "--out", tmp_path / "o", "--biters", "0")
    assert res.exit_code == 0, res.output
    got = pd.read_parquet(tmp_path / "o" / "att_gt.parquet")
    exp = cm.att_gt(
        sim.frame, "y", "step", "unit", "cohort", allow_unbalanced_panel=True, bstrap=False
    ).tidy()
    np.testing.assert_allclose(got["estimate"], exp["estimate"])


# ----------------------------------------------------------------- item 9: atomic outputs


def test_cli_fit_writes_each_output_atomically(
    stored: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "o"
    assert _run("fit", stored, "--out", out, "--biters", "0").exit_code == 0
    before = (out / "att_gt.parquet").read_bytes()
    real = pd.DataFrame.to_parquet

    def half_then_crash(self: pd.DataFrame, path: Path, **k: Any) -> None:
        real(self, path, **k)
        path.write_bytes(path.read_bytes()[:100])
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", half_then_crash)
    res = _run("fit", stored, "--out", out, "--biters", "0", "--base-period", "universal")
    assert res.exit_code == 1
    assert (out / "att_gt.parquet").read_bytes() == before  # the old result is intact
    assert not list(out.glob(".*.tmp"))


# ----------------------------------------------------------------- items 10-11: errors


@pytest.mark.parametrize(
    ("make", "fragments"),
    [
        ("truncated", ["trunc.parquet", "truncated", "write_panel"]),
        ("csv", ["p.csv", "read_csv", "Panel.from_frame"]),
        ("missing", ["nope.parquet", "does not exist"]),
        ("plain", ["plain.parquet", "Panel.from_frame"]),
    ],
)
def test_cli_names_an_unreadable_file_in_two_lines(
    make: str, fragments: list[str], design: tuple[pd.DataFrame, Panel], stored: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    f, _ = design
    target = {
        "truncated": tmp_path / "trunc.parquet",
        "csv": tmp_path / "p.csv",
        "missing": tmp_path / "nope.parquet",
        "plain": tmp_path / "plain.parquet",
    }[make]
    if make == "truncated":
        target.write_bytes(stored.read_bytes()[:2000])
    elif make == "csv":
        f.to_csv(target, index=False)
    elif make == "plain":
        f.to_parquet(target)
    res = _run("fit", target, "--out", tmp_path / "o")
    assert res.exit_code == 1
    lines = _lines(res)
    assert len(lines) == 2 and lines[0].startswith("causalmem fit: ")
    assert "--debug" in lines[1]
    for frag in fragments:
        assert frag in lines[0]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--control-group", "bogus"], "--control-group bogus is not supported"),
        (["--outcome", "zz"], "--outcome 'zz' is not an outcome"),
        (["--xformla", "~ x + {__import__('os').getcwd()}"], "FormulaError"),
        (["--xformla", "~ x + zz"], "'zz', which is not a column"),
        (["--weights", "w", "--unweighted"], "contradict"),
    ],
)
def test_cli_option_errors_are_two_lines(stored: Path, tmp_path: Path, args: list[str],
                                         fragment: str) -> None:  # fmt: skip
    res = _run("fit", stored, "--out", tmp_path / "o", "--biters", "0", *args)
    assert res.exit_code == 1
    lines = _lines(res)
    assert len(lines) == 2 and fragment in lines[0]


def test_every_command_uses_the_same_error_mechanism(tmp_path: Path) -> None:
    (tmp_path / "fam.toml").write_text("[family]\nbogus = 1\n")
    (tmp_path / "demo.toml").write_text("[demo]\nbogus = 1\n")
    cases = {
        "report": ["report", tmp_path / "nope"],
        "family": ["family", tmp_path / "fam.toml", "--out", tmp_path / "f"],
        "demo": ["demo", "--simulated", "--config", tmp_path / "demo.toml", "--out", tmp_path],
    }
    for name, args in cases.items():
        res = _run(*args)
        assert res.exit_code == 1, name
        lines = _lines(res)
        assert len(lines) == 2 and lines[0].startswith(f"causalmem {name}: "), res.output


def test_debug_shows_the_original_exception(tmp_path: Path) -> None:
    res = _run("--debug", "fit", tmp_path / "p.csv", "--out", tmp_path / "o")
    assert res.exit_code != 0
    assert isinstance(res.exception, FileNotFoundError)
    (tmp_path / "p.csv").write_text("a,b\n1,2\n")
    res = _run("--debug", "fit", tmp_path / "p.csv", "--out", tmp_path / "o")
    assert isinstance(res.exception, PanelFileError)


def test_report_advice_names_options_the_cli_has(
    design: tuple[pd.DataFrame, Panel], tmp_path: Path
) -> None:
    f, _ = design
    d = tmp_path / "rep"
    d.mkdir()
    q = Panel.from_frame(
        f.rename(columns={"y": "score"}), unit="unit", step="step", cohort="cohort",
        outcomes="score",
    )  # fmt: skip
    write_panel(q, d / "m.parquet")
    res = _run("report", d, "--biters", "0")
    assert res.exit_code == 1
    first = _lines(res)[0]
    assert "pass sign=" not in first and "--outcome" in first and "'score'" in first


def test_library_advice_is_spelled_as_options() -> None:
    from typer.main import get_command

    group = get_command(app)
    fit = group.get_command(None, "fit")  # type: ignore[attr-defined]
    msg = "pass allow_unbalanced_panel=True or drop_always_treated=True; biters=19 is few."
    got = _cli_advice(msg, fit)
    assert got == "pass --allow-unbalanced-panel or --drop-always-treated; --biters 19 is few."
    assert _cli_advice("pass sign=-1", fit) == "pass sign=-1"  # no such option: unchanged
    got = _cli_advice("use biters >= 10, or bstrap=False for analytic SEs; --biters 5", fit)
    assert got == "use --biters >= 10, or --biters 0 for analytic SEs; --biters 5"
    assert _cli_advice("alp=0.05. xformla='~ x'", fit) == "--alp 0.05. --xformla '~ x'"


def test_formula_error_class_is_used() -> None:
    from causalmem.estimators.formula import check_formula_text

    with pytest.raises(FormulaError):
        check_formula_text("~ x + {1}")


def test_cli_fit_dynamic_window_options_match_aggte(stored: Path, tmp_path: Path) -> None:
    args = ["--biters", "0", "--min-e", "-2", "--max-e", "2", "--balance-e", "1"]
    res = _run("fit", stored, "--out", tmp_path / "o", *args)
    assert res.exit_code == 0, res.output
    got = pd.read_parquet(tmp_path / "o" / "aggte_dynamic.parquet")
    fitted = cm.att_gt(read_panel(stored), bstrap=False, seed=1234)
    exp = cm.aggte(fitted, "dynamic", min_e=-2, max_e=2, balance_e=1).tidy()
    pd.testing.assert_frame_equal(got, exp)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["fit", "p.parquet", "--out", "o", "--bogus"], "causalmem fit: No such option: --bogus"),
        (["fit"], "causalmem fit: Missing argument"),
        (["fit", "p.parquet", "--out", "o", "--biters", "abc"], "'--biters'"),
        (["bogus"], "causalmem: No such command 'bogus'"),
    ],
)
def test_malformed_command_lines_are_two_lines_and_exit_2(args: list[str], fragment: str) -> None:
    res = _run(*args)
    assert res.exit_code == 2
    lines = _lines(res)
    assert len(lines) == 2 and fragment in lines[0] and "--help" in lines[1]
