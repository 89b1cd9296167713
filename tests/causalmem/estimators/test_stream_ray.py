"""att_gt as a Ray map-reduce on a local 2-worker Ray instance.

Reference: the in-memory engine (checked against R ``did`` elsewhere). The Ray result must
equal it to 1e-12 (same keyed multipliers), and must not change when a task fails and is
retried or when the data are split into a different number of shards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import causalmem as cm
from causalmem.errors import PanelSchemaError

ray = pytest.importorskip("ray")
from causalmem.estimators.ray_engine import att_gt_ray  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _panel() -> pd.DataFrame:
    df = cm.simulate_panel(
        cohorts=(3, 4, 6), units_per_cohort=40, n_never=60, steps=range(1, 8), seed=11
    ).frame
    return df.sort_values(["unit", "step"]).reset_index(drop=True)


def _shards(df: pd.DataFrame, folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, part in enumerate(np.array_split(df["unit"].unique(), n)):
        df[df["unit"].isin(part)].to_parquet(folder / f"part-{i:03d}.parquet", index=False)
    return folder


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    ok = ~np.isnan(a)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    return float(np.max(np.abs(a[ok] - b[ok])) / np.max(np.abs(a[ok])))


def test_ray_equals_in_memory_and_survives_retries(local_ray: None, tmp_path: Path) -> None:
    df = _panel()
    ref = cm.att_gt(df, "y", "step", "unit", "cohort", biters=200, seed=4)
    three = _shards(df, tmp_path / "three", 3)
    got = att_gt_ray(three, "y", "step", "unit", "cohort", biters=200, seed=4, batch_rows=97)
    assert _rel(ref.att, got.att) < 1e-12 and _rel(ref.se, got.se) < 1e-12
    assert abs(ref.crit_val - got.crit_val) < 1e-12 * ref.crit_val
    for t in ("simple", "dynamic", "group", "calendar"):
        a, b = cm.aggte(ref, t), cm.aggte(got, t)
        assert abs(a.overall_std_error - b.overall_std_error) < 1e-12 * a.overall_std_error
    # Every task fails on its first attempt and is retried: same numbers.
    retried = att_gt_ray(
        three,
        "y",
        "step",
        "unit",
        "cohort",
        biters=200,
        seed=4,
        max_retries=2,
        _fail_marker=str(tmp_path / "fail"),
    )
    assert list(tmp_path.glob("fail.*")), "the injected failures did not run"
    assert _rel(got.se, retried.se) < 1e-12 and _rel(got.att, retried.att) < 1e-12
    # Another shard layout, same numbers.
    seven = _shards(df, tmp_path / "seven", 7)
    other = att_gt_ray(seven, "y", "step", "unit", "cohort", biters=200, seed=4)
    assert _rel(got.se, other.se) < 1e-12


def test_ray_refuses_units_split_across_shards(local_ray: None, tmp_path: Path) -> None:
    df = _panel()
    folder = tmp_path / "bad"
    folder.mkdir()
    df.iloc[: len(df) // 2 + 3].to_parquet(folder / "a.parquet", index=False)
    df.iloc[len(df) // 2 + 3 :].to_parquet(folder / "b.parquet", index=False)
    with pytest.raises(PanelSchemaError, match="split\\s+between shards|overlap"):
        att_gt_ray(folder, "y", "step", "unit", "cohort", bstrap=False)
