"""Streamed att_gt: equal to the in-memory engine (1e-12), any source, any batch layout.

The reference is the in-memory engine (itself checked against R ``did`` in test_r_did_mpdta.py):
streaming only changes the order of the sums, so estimates, analytic and bootstrap SEs (keyed
multipliers), sup-t critical values and the four aggregations must agree to rounding (1e-12
relative). Error messages must be those of the in-memory validation.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import causalmem as cm
from causalmem._types import AggType
from causalmem.errors import (
    AlwaysTreatedError,
    CausalmemWarning,
    CohortError,
    DuplicateKeyError,
    OutcomeError,
    PanelSchemaError,
    UnbalancedPanelError,
)
from causalmem.estimators.streaming import StreamProgress, att_gt_stream

AGG: tuple[AggType, ...] = ("simple", "dynamic", "group", "calendar")
RTOL = 1e-12


def _panel(seed: int = 0, **kw: object) -> pd.DataFrame:
    args = dict(cohorts=(3, 4, 6), units_per_cohort=30, n_never=40, steps=range(1, 8), seed=seed)
    args.update(kw)
    df = cm.simulate_panel(**args).frame  # type: ignore[arg-type]
    return df.sort_values(["unit", "step"]).reset_index(drop=True)


def _close(a: np.ndarray, b: np.ndarray) -> None:
    a, b = np.asarray(a, float), np.asarray(b, float)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    ok = ~np.isnan(a)
    scale = max(np.abs(a[ok]).max(), 1e-300) if ok.any() else 1.0
    assert np.all(np.abs(a[ok] - b[ok]) <= RTOL * scale), np.abs(a[ok] - b[ok]).max() / scale


def _same(a: cm.AttGtResult, b: cm.AttGtResult, aggs: bool = True) -> None:
    _close(a.att, b.att)
    _close(a.se, b.se)
    _close(a.se_analytic, b.se_analytic)
    assert a.band == b.band and a.n_units == b.n_units
    assert abs(a.crit_val - b.crit_val) <= RTOL * a.crit_val
    if not aggs:
        return
    for t in AGG:
        x, y = cm.aggte(a, t), cm.aggte(b, t)
        _close(np.append(x.estimate, x.overall_estimate), np.append(y.estimate, y.overall_estimate))
        _close(
            np.append(x.std_error, x.overall_std_error), np.append(y.std_error, y.overall_std_error)
        )
        assert x.band == y.band and abs(x.crit_val - y.crit_val) <= RTOL * x.crit_val


def _shards(df: pd.DataFrame, folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    units = df["unit"].unique()
    for i, part in enumerate(np.array_split(units, n)):
        df[df["unit"].isin(part)].to_parquet(folder / f"part-{i:03d}.parquet", index=False)
    return folder


@pytest.mark.parametrize("bstrap", [False, True])
def test_parquet_folder_equals_in_memory(tmp_path: Path, bstrap: bool) -> None:
    df = _panel(1)
    ref = cm.att_gt(df, "y", "step", "unit", "cohort", bstrap=bstrap, biters=300, seed=7)
    folder = _shards(df, tmp_path / "shards", 3)
    got = cm.att_gt(str(folder), "y", "step", "unit", "cohort", bstrap=bstrap, biters=300, seed=7)
    _same(ref, got)
    assert got.glance()["pretest_wald"].iloc[0] == pytest.approx(
        ref.glance()["pretest_wald"].iloc[0], rel=1e-8
    )


@pytest.mark.parametrize("batch_rows", [1, 5, 7, 64, 10_000])
def test_batch_size_does_not_change_results(batch_rows: int) -> None:
    df = _panel(2)
    ref = cm.att_gt(df, "y", "step", "unit", "cohort", biters=200, seed=1)
    got = att_gt_stream(
        df, "y", "step", "unit", "cohort", biters=200, seed=1, batch_rows=batch_rows
    )
    _same(ref, got, aggs=batch_rows == 7)


@pytest.mark.parametrize(
    "opts",
    [
        dict(control_group="notyettreated"),
        dict(base_period="universal"),
        dict(anticipation=1, control_group="notyettreated", base_period="universal"),
        dict(weightsname="w"),
    ],
)
def test_options_equal_in_memory(opts: dict[str, Any]) -> None:
    df = _panel(3)
    rng = np.random.default_rng(0)
    wu = pd.Series(rng.uniform(0.3, 2.0, df["unit"].nunique()), index=df["unit"].unique())
    df = df.assign(w=df["unit"].map(wu))
    ref = cm.att_gt(df, "y", "step", "unit", "cohort", biters=200, seed=5, **opts)
    got = att_gt_stream(
        df, "y", "step", "unit", "cohort", biters=200, seed=5, batch_rows=50, **opts
    )
    _same(ref, got)


def test_no_never_treated_units() -> None:
    df = _panel(4, n_never=0)
    with pytest.warns(CausalmemWarning, match="serves as the comparison group"):
        ref = cm.att_gt(
            df, "y", "step", "unit", "cohort", control_group="notyettreated", biters=100, seed=2
        )
    with pytest.warns(CausalmemWarning, match="serves as the comparison group"):
        got = att_gt_stream(
            df,
            "y",
            "step",
            "unit",
            "cohort",
            control_group="notyettreated",
            biters=100,
            seed=2,
            batch_rows=33,
        )
    _same(ref, got, aggs=False)


def test_sources_pyarrow_polars_duckdb(tmp_path: Path) -> None:
    df = _panel(5)
    ref = cm.att_gt(df, "y", "step", "unit", "cohort", biters=100, seed=3)
    path = tmp_path / "p.parquet"
    df.to_parquet(path, index=False)
    table = pq.read_table(path)
    sources = {
        "dataset": ds.dataset(path),
        "table": table,
        "lazy": pl.scan_parquet(path),
        "duckdb": duckdb.sql(f"SELECT * FROM read_parquet('{path}') ORDER BY unit, step"),
        "reader": pa.RecordBatchReader.from_batches(table.schema, table.to_batches(50)),
    }
    for name, src in sources.items():
        got = cm.att_gt(src, "y", "step", "unit", "cohort", biters=100, seed=3)
        _same(ref, got, aggs=False)
        assert got.n_units == ref.n_units, name
    # In-memory Polars / pyarrow frames go through the in-memory engine (role columns only).
    for frame in (pl.from_pandas(df), table):
        got = cm.att_gt(frame, "y", "step", "unit", "cohort", biters=100, seed=3)
        np.testing.assert_array_equal(got.att, ref.att)
        np.testing.assert_array_equal(got.se, ref.se)


def test_string_unit_ids() -> None:
    df = _panel(6)
    df = df.assign(unit=df["unit"].map(lambda u: f"doc-{u:05d}"))
    ref = cm.att_gt(df, "y", "step", "unit", "cohort", biters=100, seed=3)
    got = att_gt_stream(df, "y", "step", "unit", "cohort", biters=100, seed=3, batch_rows=40)
    _same(ref, got, aggs=False)


def _messages(df: pd.DataFrame, exc: type[Exception], **kw: Any) -> tuple[str, str]:
    with pytest.raises(exc) as a:
        cm.att_gt(df, "y", "step", "unit", "cohort", bstrap=False, **kw)
    with pytest.raises(exc) as b:
        att_gt_stream(df, "y", "step", "unit", "cohort", bstrap=False, batch_rows=1000, **kw)
    return str(a.value), str(b.value)


def test_errors_match_in_memory_validation() -> None:
    df = _panel(7)
    a, b = _messages(df.drop(index=[3, 40]), UnbalancedPanelError)
    assert a == b
    dup = pd.concat([df, df.iloc[[5]]]).sort_values(["unit", "step"], kind="stable")
    a, b = _messages(dup, DuplicateKeyError)
    assert a == b
    bad = df.copy()
    bad.loc[[10, 20], "y"] = np.nan
    a, b = _messages(bad, OutcomeError)
    assert a == b
    vary = df.copy()
    vary.loc[vary["unit"] == vary["unit"].iloc[0], "cohort"] = [3, 4, 3, 3, 3, 3, 3]
    a, b = _messages(vary, CohortError)
    assert a == b
    always = df.copy()
    always.loc[always["unit"] == always["unit"].iloc[0], "cohort"] = 1
    a, b = _messages(always, AlwaysTreatedError)
    assert a == b


def test_unsorted_input_is_refused_with_advice() -> None:
    df = _panel(8)
    shuffled = df.sample(frac=1.0, random_state=0)
    with pytest.raises(PanelSchemaError, match="sorted by unit"):
        att_gt_stream(shuffled, "y", "step", "unit", "cohort", bstrap=False)


def test_unbalanced_and_covariates_take_the_explicit_in_memory_path() -> None:
    df = _panel(9, unbalanced_fraction=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CausalmemWarning)
        ref = cm.att_gt(
            df, "y", "step", "unit", "cohort", allow_unbalanced_panel=True, biters=100, seed=1
        )
    with pytest.warns(CausalmemWarning, match="in-memory engine"):
        got = att_gt_stream(
            df, "y", "step", "unit", "cohort", allow_unbalanced_panel=True, biters=100, seed=1
        )
    np.testing.assert_allclose(got.att, ref.att, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(got.se, ref.se, rtol=1e-12, equal_nan=True)
    df = _panel(9, covariate_effect=0.5)
    with pytest.warns(CausalmemWarning, match="covariates"):
        att_gt_stream(df, "y", "step", "unit", "cohort", xformla="~ x", bstrap=False)


def test_progress_callback_counts_units_and_rows() -> None:
    df = _panel(10)
    seen: list[StreamProgress] = []
    att_gt_stream(
        df, "y", "step", "unit", "cohort", bstrap=False, batch_rows=100, progress=seen.append
    )
    assert seen[-1].units == df["unit"].nunique() and seen[-1].rows == len(df)
    assert len(seen) >= len(df) // 100


@pytest.mark.slow
def test_cli_fit_stream_writes_the_in_memory_numbers(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from causalmem.cli import app

    df = _panel(11)
    folder = _shards(df, tmp_path / "shards", 2)
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app,
        [
            "fit-stream",
            str(folder),
            "--out",
            str(out),
            "--biters",
            "100",
            "--seed",
            "5",
            "--batch-rows",
            "100",
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "memory bound" in res.output
    ref = cm.att_gt(df, "y", "step", "unit", "cohort", biters=100, seed=5)
    got = pd.read_parquet(out / "att_gt.parquet")
    np.testing.assert_allclose(got["estimate"], ref.tidy()["estimate"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got["std_error"], ref.tidy()["std_error"], rtol=1e-12)
    for k in AGG:
        assert (out / f"aggte_{k}.parquet").exists()
    bad = CliRunner().invoke(
        app, ["fit-stream", str(folder), "--out", str(out), "--outcome", "nope"]
    )
    assert bad.exit_code != 0 and "nope" in bad.output


def test_a_unit_split_across_files_is_read_as_one_stream(tmp_path: Path) -> None:
    """Single-process streaming reads files in path order as one sorted stream."""
    df = _panel(12)
    folder = tmp_path / "split"
    folder.mkdir()
    cut = len(df) // 2 + 3  # inside a unit
    df.iloc[:cut].to_parquet(folder / "a.parquet", index=False)
    df.iloc[cut:].to_parquet(folder / "b.parquet", index=False)
    ref = cm.att_gt(df, "y", "step", "unit", "cohort", biters=100, seed=2)
    got = cm.att_gt(str(folder), "y", "step", "unit", "cohort", biters=100, seed=2)
    _same(ref, got, aggs=False)


@pytest.mark.slow
def test_cli_fit_stream_reads_the_roles_of_a_stored_panel(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from causalmem.cli import app
    from causalmem.panel import Panel, write_panel

    df = _panel(13).rename(columns={"unit": "seq", "step": "ckpt", "cohort": "g", "y": "sup"})
    panel = Panel.from_frame(df, unit="seq", step="ckpt", cohort="g", outcomes=("sup",))
    path = write_panel(panel, tmp_path / "panel.parquet")
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app, ["fit-stream", str(path), "--out", str(out), "--biters", "0", "--no-progress"]
    )
    assert res.exit_code == 0, res.output
    ref = cm.att_gt(df, "sup", "ckpt", "seq", "g", bstrap=False)
    got = pd.read_parquet(out / "att_gt.parquet")
    np.testing.assert_allclose(got["estimate"], ref.tidy()["estimate"], rtol=1e-12, atol=1e-14)


def test_a_folder_is_its_parquet_files_only(tmp_path: Path) -> None:
    """Files beside the shards (notes, arrays, markers) are not data, as for the Ray engine."""
    df = _panel(21)
    folder = tmp_path / "shards"
    folder.mkdir()
    units = df["unit"].unique()
    for i, part in enumerate(np.array_split(units, 3)):
        df[df["unit"].isin(part)].to_parquet(folder / f"part-{i}.parquet", index=False)
    np.savez(folder / "numbers.npz", a=np.arange(3))
    (folder / "_SUCCESS").write_text("")
    got = cm.att_gt(folder, "y", "step", "unit", "cohort", bstrap=False)
    ref = cm.att_gt(df, "y", "step", "unit", "cohort", bstrap=False)
    _close(got.att, ref.att)
    _close(got.se, ref.se)
    with pytest.raises(FileNotFoundError, match=r"No \*\.parquet files under"):
        (tmp_path / "empty").mkdir()
        cm.att_gt(tmp_path / "empty", "y", "step", "unit", "cohort")
