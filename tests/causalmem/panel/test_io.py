from __future__ import annotations

import json
import pickle
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import causalmem.panel.io as panel_io
from causalmem.errors import (
    CausalmemWarning,
    MissingColumnError,
    OutcomeError,
    PanelSchemaError,
)
from causalmem.panel import (
    SCHEMA_VERSION,
    Panel,
    PanelSchema,
    read_panel,
    simulate_panel,
    write_panel,
)


def make_frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    units = np.repeat(["s0", "s1", "s2", "s3", "v0", "v1"], 3)
    return pd.DataFrame(
        {
            "seq_idx": units,
            "step": np.tile([0, 1000, 2000], 6),
            "cohort": np.repeat([1000, 1000, 2000, 2000, None, None], 3),
            "sup_seq": rng.normal(size=18),
            "acc_seq": rng.uniform(size=18),
            "w": np.repeat([1.0, 2.0, 1.0, 1.0, 0.5, 0.5], 3),
            "cl": np.repeat([0, 0, 1, 1, 2, 2], 3),
            "x": rng.normal(size=18),
        }
    ).iloc[::-1]


def make_panel(**kwargs: object) -> Panel:
    spec: dict[str, object] = {
        "unit": "seq_idx",
        "step": "step",
        "cohort": "cohort",
        "outcomes": ("sup_seq", "acc_seq"),
        "weights": "w",
        "clusters": ("cl",),
        "covariates": ("x",),
        "meta": {"model": "pythia-70m-deduped", "metric": "sup_seq"},
    }
    spec.update(kwargs)
    return Panel.from_frame(make_frame(), **spec)  # type: ignore[arg-type]


# --- PanelSchema ------------------------------------------------------------------------------


def test_schema_round_trip_and_json() -> None:
    s = PanelSchema("u", "t", "g", ["y1", "y2"], weights="w", clusters="c", covariates=["x"])
    assert s.outcomes == ("y1", "y2") and s.clusters == ("c",) and s.covariates == ("x",)
    d = s.to_dict()
    assert d["version"] == SCHEMA_VERSION == "1"
    assert PanelSchema.from_dict(json.loads(json.dumps(d))) == s


def test_schema_is_frozen() -> None:
    s = PanelSchema("u", "t", "g", ("y",))
    with pytest.raises(AttributeError):
        s.unit = "v"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"unit": "u", "step": "t", "cohort": "g", "outcomes": ["y"], "version": "99"}, "version"),
        ({"unit": "u", "step": "t", "cohort": "g", "outcomes": ["y"], "foo": 1}, "Unknown"),
        ({"unit": "u", "step": "t", "outcomes": ["y"]}, "lacks required keys"),
        ({"unit": "u", "step": "t", "cohort": "g", "outcomes": []}, "outcomes is empty"),
    ],
)
def test_schema_from_dict_errors(data: dict[str, object], fragment: str) -> None:
    with pytest.raises(PanelSchemaError, match=fragment):
        PanelSchema.from_dict(data)


# --- Panel ------------------------------------------------------------------------------------


def test_panel_properties() -> None:
    p = make_panel()
    assert p.n_units == 6
    assert p.steps.tolist() == [0, 1000, 2000]
    assert p.cohorts.tolist() == [1000, 2000]
    assert p.n_never == 2
    assert p.is_balanced
    assert p.schema.outcomes == ("sup_seq", "acc_seq")
    assert list(p.frame.columns) == [
        "seq_idx",
        "step",
        "cohort",
        "sup_seq",
        "acc_seq",
        "w",
        "cl",
        "x",
    ]
    assert p.frame["seq_idx"].tolist()[:3] == ["s0", "s0", "s0"]
    assert "units=6" in repr(p)


def test_panel_meta_provenance() -> None:
    p = make_panel()
    assert p.meta["user"] == {"model": "pythia-70m-deduped", "metric": "sup_seq"}
    created = datetime.fromisoformat(p.meta["created_at"])
    assert created.utcoffset() is not None and created.utcoffset().total_seconds() == 0
    assert p.meta["pandas_version"] == pd.__version__
    assert p.meta["numpy_version"] == np.__version__
    assert "causalmem_version" in p.meta
    assert p.meta["validation"]["allow_unbalanced_panel"] is False


def test_panel_meta_must_be_json() -> None:
    with pytest.raises(TypeError, match="JSON-serialisable"):
        make_panel(meta={"bad": object()})


def test_panel_outcome_and_to_frame_are_copies() -> None:
    p = make_panel()
    y = p.outcome("sup_seq")
    y.iloc[0] = 99.0
    assert p.frame["sup_seq"].iloc[0] != 99.0
    f = p.to_frame()
    f.loc[0, "step"] = 5
    assert p.frame.loc[0, "step"] == 0
    with pytest.raises(PanelSchemaError, match="2 outcomes"):
        p.outcome()
    with pytest.raises(MissingColumnError, match="not an outcome"):
        p.outcome("w")
    single = make_panel(outcomes="sup_seq")
    pd.testing.assert_series_equal(single.outcome(), single.frame["sup_seq"])


def test_panel_does_not_mutate_input() -> None:
    df = make_frame()
    before = df.copy(deep=True)
    Panel.from_frame(df, unit="seq_idx", step="step", cohort="cohort", outcomes="sup_seq")
    pd.testing.assert_frame_equal(df, before)


def test_panel_from_frame_validates() -> None:
    df = make_frame()
    df.loc[df.index[0], "sup_seq"] = np.nan
    with pytest.raises(OutcomeError):
        Panel.from_frame(df, unit="seq_idx", step="step", cohort="cohort", outcomes="sup_seq")


def test_panel_drop_always_treated_recorded() -> None:
    df = make_frame()
    df.loc[df["seq_idx"] == "s0", "cohort"] = 0
    with pytest.warns(CausalmemWarning):
        p = Panel.from_frame(
            df,
            unit="seq_idx",
            step="step",
            cohort="cohort",
            outcomes="sup_seq",
            drop_always_treated=True,
        )
    assert p.n_units == 5
    assert p.meta["validation"]["n_dropped_always_treated"] == 1


def test_panel_is_frozen_and_picklable() -> None:
    p = make_panel()
    with pytest.raises(AttributeError):
        p.schema = p.schema  # type: ignore[misc]
    q = pickle.loads(pickle.dumps(p))
    assert q.equals(p)


# --- io ---------------------------------------------------------------------------------------


def test_round_trip(tmp_path: Path) -> None:
    p = make_panel()
    out = write_panel(p, tmp_path / "panel.parquet")
    assert out == tmp_path / "panel.parquet"
    q = read_panel(out)
    pd.testing.assert_frame_equal(q.frame, p.frame, check_exact=True)
    assert q.frame["cohort"].dtype == "Int64"
    assert q.frame["cohort"].isna().sum() == 6
    assert q.schema == p.schema
    assert dict(q.meta) == dict(p.meta)
    assert q.equals(p)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["panel.parquet"]
    assert out.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600


def test_round_trip_unbalanced_int_ids(tmp_path: Path) -> None:
    sim = simulate_panel(unbalanced_fraction=0.2, seed=3)
    p = sim.to_panel()
    assert not p.is_balanced
    q = read_panel(write_panel(p, tmp_path / "sim.parquet"))
    pd.testing.assert_frame_equal(q.frame, p.frame, check_exact=True)
    assert q.equals(p)


def test_metadata_is_inside_the_file(tmp_path: Path) -> None:
    path = write_panel(make_panel(), tmp_path / "anything.parquet")
    raw = pq.read_schema(path).metadata
    payload = json.loads(raw[b"causalmem"])
    assert payload["schema"]["unit"] == "seq_idx"
    assert payload["schema"]["version"] == SCHEMA_VERSION
    assert payload["meta"]["user"]["model"] == "pythia-70m-deduped"


def test_overwrite_replaces(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    write_panel(make_panel(), path)
    write_panel(make_panel(outcomes="acc_seq"), path)
    assert read_panel(path).schema.outcomes == ("acc_seq",)
    assert [x.name for x in tmp_path.iterdir()] == ["p.parquet"]


def test_atomic_write_leaves_nothing_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_writer(table: pa.Table, where: object, **kwargs: object) -> None:
        Path(str(where)).write_bytes(b"PAR1 partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(panel_io.pq, "write_table", broken_writer)
    with pytest.raises(OSError, match="disk full"):
        write_panel(make_panel(), tmp_path / "p.parquet")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_keeps_existing_file_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "p.parquet"
    p = make_panel()
    write_panel(p, path)
    before = path.read_bytes()

    def broken_writer(table: pa.Table, where: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(panel_io.pq, "write_table", broken_writer)
    with pytest.raises(KeyboardInterrupt):
        write_panel(make_panel(outcomes="acc_seq"), path)
    assert path.read_bytes() == before
    assert [x.name for x in tmp_path.iterdir()] == ["p.parquet"]


def test_write_requires_a_panel(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="expects a Panel"):
        write_panel(make_frame(), tmp_path / "p.parquet")  # type: ignore[arg-type]


def test_read_plain_parquet_without_metadata(tmp_path: Path) -> None:
    path = tmp_path / "plain.parquet"
    make_frame().to_parquet(path)
    with pytest.raises(PanelSchemaError, match="no causalmem metadata"):
        read_panel(path)


def _rewrite_metadata(src: Path, dst: Path, blob: bytes) -> None:
    table = pq.read_table(src)
    md = dict(table.schema.metadata)
    md[b"causalmem"] = blob
    pq.write_table(table.replace_schema_metadata(md), dst)


def test_read_unsupported_version(tmp_path: Path) -> None:
    src = write_panel(make_panel(), tmp_path / "p.parquet")
    payload = json.loads(pq.read_schema(src).metadata[b"causalmem"])
    payload["schema"]["version"] = "2"
    _rewrite_metadata(src, tmp_path / "v2.parquet", json.dumps(payload).encode())
    with pytest.raises(PanelSchemaError, match="schema version '2'"):
        read_panel(tmp_path / "v2.parquet")


def test_read_corrupt_metadata(tmp_path: Path) -> None:
    src = write_panel(make_panel(), tmp_path / "p.parquet")
    _rewrite_metadata(src, tmp_path / "bad.parquet", b"{not json")
    with pytest.raises(PanelSchemaError, match="corrupt causalmem metadata"):
        read_panel(tmp_path / "bad.parquet")
    _rewrite_metadata(src, tmp_path / "noschema.parquet", b'{"meta": {}}')
    with pytest.raises(PanelSchemaError, match="lacks a 'schema'"):
        read_panel(tmp_path / "noschema.parquet")


def test_read_revalidates(tmp_path: Path) -> None:
    src = write_panel(make_panel(), tmp_path / "p.parquet")
    table = pq.read_table(src)
    frame = table.to_pandas()
    frame.loc[0, "sup_seq"] = np.nan
    tampered = pa.Table.from_pandas(frame, preserve_index=False)
    tampered = tampered.replace_schema_metadata(
        {**tampered.schema.metadata, b"causalmem": table.schema.metadata[b"causalmem"]}
    )
    pq.write_table(tampered, tmp_path / "t.parquet")
    with pytest.raises(OutcomeError):
        read_panel(tmp_path / "t.parquet")
