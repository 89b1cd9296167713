"""Out-of-core ATT(g, t): stream a panel in bounded batches of units, keep cohort statistics.

:func:`att_gt_stream` reads only the role columns of a parquet file or folder of shards, a
pyarrow ``Dataset``/``Table``/``RecordBatchReader``, a Polars ``LazyFrame``/``DataFrame``, a
DuckDB relation or a pandas frame, in batches of ``batch_rows`` rows, validates each batch
column-wise (the checks and messages of :func:`~causalmem.panel.checks.validate_long`), and
accumulates the per-cohort sufficient statistics of :mod:`causalmem._numerics.streamed` (and, for
the bootstrap, the per-cohort sums of multipliers keyed by unit id). Memory is
``O(batch_rows + (T + 1) T (T + B))`` floats, independent of the number of units. The result is
an ordinary :class:`~causalmem.results.attgt.AttGtResult`: :func:`~causalmem.aggte` works on it
(analytic and bootstrap, uniform bands) and gives the in-memory numbers up to rounding.

Input contract (checked, with a clear error): the rows of a unit are contiguous and units come in
non-decreasing id order across batches, files and shards (write shards sorted by unit; the
scoring stage's output is). Steps within a unit may come in any order.

Scope: balanced panels without covariates or cluster variables besides the unit (the structured
engine). Unbalanced panels, ``xformla`` and ``clustervars`` take an explicit slower path: the role
columns are read into memory and the in-memory engine runs (a :class:`CausalmemWarning` says so).
Repeated cross-sections are not supported here.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from causalmem._numerics.keyed import bootstrap_key, hash_ids
from causalmem._numerics.streamed import CohortMoments, StreamedIF
from causalmem._types import BasePeriod, ControlGroup, EstMethod
from causalmem.errors import (
    CausalmemWarning,
    CohortError,
    OutcomeError,
    PanelSchemaError,
    StepError,
    UnbalancedPanelError,
    WeightsError,
)
from causalmem.panel.checks import (
    OUTCOME_NAN_FIX,
    _always_treated_error,
    _check_finite,
    _check_weight_values,
    _cohort_varies_error,
    _duplicate_keys_error,
    _missing_columns_error,
    _non_numeric_error,
    _off_grid_error,
    _py,
    _step_ints,
    _step_non_numeric_error,
    _unbalanced_error,
    _unit_mixed_error,
    _unit_na_error,
    _varies_within,
)
from causalmem.panel.schema import _show
from causalmem.results.attgt import AttGtResult, AttGtSpec

__all__ = ["StreamProgress", "att_gt_stream", "is_streamable", "read_batches"]

#: Default rows per batch (~ 65k units of a 16-step panel; a few MB per column).
DEFAULT_BATCH_ROWS = 1 << 20


@dataclass
class StreamProgress:
    """What a progress callback receives after each batch."""

    units: int = 0
    rows: int = 0
    batches: int = 0
    elapsed_s: float = 0.0
    total_rows: int | None = None

    @property
    def rows_per_s(self) -> float:
        """Rows read per second so far."""
        return self.rows / self.elapsed_s if self.elapsed_s > 0 else 0.0


def is_streamable(data: Any) -> bool:
    """Whether ``data`` is a source :func:`att_gt_stream` reads lazily (path, dataset, ...)."""
    if isinstance(data, str | os.PathLike):
        return True
    mod = type(data).__module__
    name = type(data).__name__
    return (
        (
            mod.startswith("pyarrow")
            and name in ("FileSystemDataset", "Dataset", "RecordBatchReader")
        )
        or (mod.startswith("polars") and name == "LazyFrame")
        or (mod.startswith("duckdb") and "Relation" in name)
    )


def _total_rows(source: Any) -> int | None:
    try:
        import pyarrow.dataset as ds

        if isinstance(source, ds.Dataset):
            return int(source.count_rows())
    except Exception:  # pragma: no cover - count is only for the progress bar
        return None
    return None


def parquet_files(source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    """Return the parquet files of a folder (sorted ``*.parquet`` below it), a file or a list.

    Only ``*.parquet`` files of a folder are data: other files beside them (notes, ``.npz``,
    ``_SUCCESS`` markers) are not read, by the streamed engine and the Ray engine alike.
    """
    if isinstance(source, str | os.PathLike):
        p = Path(source)
        if p.is_dir():
            files = sorted(str(f) for f in p.rglob("*.parquet"))
            if not files:
                raise FileNotFoundError(f"No *.parquet files under {str(p)!r}.")
            return files
        if not p.exists():
            raise FileNotFoundError(f"No parquet file or folder at {str(p)!r}.")
        return [str(p)]
    return [os.fspath(f) for f in source]


def _parquet_dataset(path: str | os.PathLike[str]) -> Any:
    """Return a pyarrow dataset of the parquet files of ``path`` (see :func:`parquet_files`)."""
    import pyarrow.dataset as ds

    return ds.dataset(parquet_files(path), format="parquet")


def read_batches(source: Any, columns: Sequence[str], batch_rows: int) -> Iterator[Any]:
    """Yield pyarrow ``RecordBatch`` es of ``columns`` from any supported source, in order.

    Parameters
    ----------
    source
        Parquet file or folder (``str``/``Path``), pyarrow ``Dataset``, ``Table``,
        ``RecordBatchReader``, Polars ``LazyFrame``/``DataFrame``, DuckDB relation or pandas
        ``DataFrame``.
    columns
        Columns to read (only these are read from storage).
    batch_rows
        Rows per batch (an upper bound).
    """
    import pyarrow as pa
    import pyarrow.dataset as ds

    cols = list(dict.fromkeys(columns))
    if isinstance(source, str | os.PathLike):
        source = _parquet_dataset(source)
        files = getattr(source, "files", None)
        if files:  # read the files one by one, in path order, without read-ahead threads
            import pyarrow.parquet as pq

            _check_columns(cols, source.schema.names)
            for f in sorted(files):
                with pq.ParquetFile(f) as pf:
                    for b in pf.iter_batches(batch_size=batch_rows, columns=cols):
                        if b.num_rows:
                            yield b
            return
    if isinstance(source, ds.Dataset):
        _check_columns(cols, source.schema.names)
        scanner = source.scanner(columns=cols, batch_size=batch_rows)
        for tagged in scanner.scan_batches():  # in file order
            if tagged.record_batch.num_rows:
                yield tagged.record_batch
        return
    mod = type(source).__module__
    if mod.startswith("polars"):
        import polars as pl

        if isinstance(source, pl.DataFrame):
            source = source.lazy()
        _check_columns(cols, source.collect_schema().names())
        for chunk in source.select(cols).collect_batches(chunk_size=batch_rows):
            yield from chunk.to_arrow().to_batches()
        return
    if mod.startswith("duckdb"):
        _check_columns(cols, list(source.columns))
        rel = source.select(*[_duck_name(c) for c in cols])
        reader = rel.to_arrow_reader(batch_rows)
        yield from reader
        return
    if isinstance(source, pd.DataFrame):
        _check_columns(cols, [str(c) for c in source.columns])
        for r0 in range(0, len(source), batch_rows):
            part = source.iloc[r0 : r0 + batch_rows][cols]
            yield pa.RecordBatch.from_pandas(part, preserve_index=False)
        return
    if isinstance(source, pa.Table):
        _check_columns(cols, source.column_names)
        yield from source.select(cols).to_batches(max_chunksize=batch_rows)
        return
    if isinstance(source, pa.RecordBatchReader):
        _check_columns(cols, source.schema.names)
        for b in source:
            yield b.select(cols)
        return
    raise TypeError(
        f"Cannot stream a {type(source).__name__}: pass a parquet path or folder, a pyarrow "
        "Dataset/Table/RecordBatchReader, a Polars LazyFrame/DataFrame, a DuckDB relation or a "
        "pandas DataFrame."
    )


def _duck_name(c: str) -> str:
    return '"' + c.replace('"', '""') + '"'


def _check_columns(cols: Sequence[str], available: Sequence[str]) -> None:
    missing = [c for c in cols if c not in available]
    if missing:
        raise _missing_columns_error(missing, list(available))


# ---------------------------------------------------------------------------------- batches
def _np(col: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(values, is_null)`` of a pyarrow column as numpy (numbers stay numbers)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    nulls = np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    t = col.type
    if pa.types.is_dictionary(t):
        col = col.dictionary_decode()
        t = col.type
    if pa.types.is_integer(t):
        vals = pc.fill_null(col, 0).to_numpy(zero_copy_only=False)
    elif pa.types.is_floating(t):
        vals = pc.fill_null(col, np.nan).to_numpy(zero_copy_only=False)
    else:
        vals = col.to_numpy(zero_copy_only=False)
    return np.asarray(vals), nulls


@dataclass
class _Roles:
    idname: str
    tname: str
    gname: str
    yname: str
    weightsname: str | None


@dataclass
class _State:
    """Statistics and checks carried across batches."""

    roles: _Roles
    biters: int
    key: int
    drop_always_treated: bool
    grid: np.ndarray | None = None
    acc: CohortMoments | None = None
    ymax: np.ndarray | None = None
    wmin: float = np.inf
    wmax: float = 0.0
    units: int = 0
    rows: int = 0
    last_id: Any = None
    short_counts: dict[int, list[tuple[int, Any]]] = field(default_factory=dict)
    counts: list[np.ndarray] = field(default_factory=list)
    extra_steps: set[int] = field(default_factory=set)
    dropped: list[Any] = field(default_factory=list)
    dropped_n: int = 0
    dropped_cohorts: set[int] = field(default_factory=set)
    first_id: Any = None


def _steps(vals: np.ndarray, nulls: np.ndarray, ids: np.ndarray, tname: str) -> np.ndarray:
    if vals.dtype.kind not in "iuf":
        raise _step_non_numeric_error(tname, f"non-numeric (dtype {vals.dtype})")
    return _step_ints(vals, nulls, ids, tname)


def _cohorts(vals: np.ndarray, nulls: np.ndarray, gname: str) -> np.ndarray:
    """Cohorts as int64 with -1 = never treated (the checks of ``normalise_cohort``)."""
    fix = (
        f"Encode the treatment step as a non-negative integer and never-treated units as "
        f"NA (NaN/None/+inf are accepted), e.g. pd.to_numeric(df[{gname!r}])."
    )
    if vals.dtype.kind == "b":
        raise CohortError(f"Cohort column {gname!r} is boolean; it must hold steps. {fix}")
    if vals.dtype.kind not in "iuf":
        raise CohortError(f"Cohort column {gname!r} has non-numeric dtype {vals.dtype}. {fix}")
    f = vals.astype(np.float64)
    never = nulls | np.isnan(f) | (f == np.inf)
    if (f == -np.inf).any():
        raise CohortError(
            f"Cohort column {gname!r} has -inf in {int((f == -np.inf).sum())} rows; only +inf "
            f"(or NA) means never treated. {fix}"
        )
    fin = np.where(never, 0.0, f)
    neg = fin < 0
    if neg.any():
        raise CohortError(
            f"Cohort column {gname!r} has negative values {_show(np.unique(fin[neg]))}"
            f" in {int(neg.sum())} rows. {fix}"
        )
    frac = fin != np.floor(fin)
    if frac.any():
        raise CohortError(
            f"Cohort column {gname!r} has non-integer values {_show(np.unique(fin[frac]))} in "
            f"{int(frac.sum())} rows; cohorts are steps. {fix}"
        )
    return np.where(never, -1, fin.astype(np.int64))


def _process(st: _State, ids: np.ndarray, cols: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Validate a block of complete units (sorted by unit) and accumulate its statistics."""
    r = st.roles
    n_rows = ids.size
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    n_u = starts.size
    code = np.repeat(np.arange(n_u), np.diff(np.r_[starts, n_rows]))
    uids = ids[starts]
    steps = _steps(*cols[r.tname], ids, r.tname)
    if st.grid is None:
        st.grid = np.sort(steps[: (starts[1] if n_u > 1 else n_rows)])
        if st.grid.size < 2:
            raise StepError(
                f"Step column {r.tname!r}: the first unit {_py(uids[0])!r} is observed at "
                f"{st.grid.size} step(s); difference-in-differences needs at least 2 steps "
                "(streaming takes the step grid from the first unit of a balanced panel)."
            )
    grid = st.grid
    t_len = grid.size
    if (
        n_rows == n_u * t_len
        and np.array_equal(starts, np.arange(n_u) * t_len)
        and np.array_equal(steps.reshape(n_u, t_len), np.broadcast_to(grid, (n_u, t_len)))
        and _process_regular(st, ids, cols, uids, steps)
    ):
        st.rows += n_rows
        return
    tpos = np.minimum(np.searchsorted(grid, steps), t_len - 1)
    on = grid[tpos] == steps
    if not on.all():
        st.extra_steps.update(int(v) for v in np.unique(steps[~on]))
    key = code.astype(np.int64) * (t_len + 1) + np.where(on, tpos, t_len)
    cnt_key = np.bincount(key, minlength=n_u * (t_len + 1))
    dup = np.flatnonzero(cnt_key > 1)
    dup = dup[dup % (t_len + 1) < t_len]
    if dup.size:
        examples = ((uids[k // (t_len + 1)], grid[k % (t_len + 1)]) for k in dup[:5])
        n_rows_dup = int(cnt_key[dup].sum())
        raise _duplicate_keys_error(dup.size, n_rows_dup, examples, r.idname, r.tname)
    g = _cohorts(*cols[r.gname], r.gname)
    bad = _varies_within(code, g)
    if bad.size:
        raise _cohort_varies_error(r.gname, uids[bad])
    ug = g[starts]
    always = _unit_cohorts(st, ug, uids)
    yv, ynull = cols[r.yname]
    if yv.dtype.kind not in "iuf" or yv.dtype.kind == "b":
        reason = f"non-numeric (dtype {yv.dtype})"
        raise _non_numeric_error(OutcomeError, "Outcome", r.yname, reason)
    y = np.where(ynull, np.nan, yv.astype(np.float64))
    _check_finite(y, r.yname, OutcomeError, "Outcome", ids, steps, OUTCOME_NAN_FIX)
    if r.weightsname is not None:
        wv, wnull = cols[r.weightsname]
        if wv.dtype.kind not in "iuf":
            reason = f"non-numeric (dtype {wv.dtype})"
            raise _non_numeric_error(WeightsError, "Weights", r.weightsname, reason)
        w_rows = np.where(wnull, np.nan, wv.astype(np.float64))
        _check_weight_values(w_rows, r.weightsname, ids, steps, code, uids, check_positive=False)
        w = w_rows[starts]
    else:
        w = np.ones(n_u)
    # Balance: per-unit on-grid row counts (complete units have t_len).
    ucount = np.bincount(code[on], minlength=n_u)
    short = np.flatnonzero((ucount < t_len) | (np.bincount(code[~on], minlength=n_u) > 0))
    rows_u = np.bincount(code, minlength=n_u).astype(np.int32)
    st.counts.append(rows_u)
    for c in np.unique(rows_u):  # the first 5 units of every row count, for the messages
        lst = st.short_counts.setdefault(int(c), [])
        if len(lst) < 5:
            idx = np.flatnonzero(rows_u == c)[: 5 - len(lst)]
            lst.extend((st.units + int(i), uids[i]) for i in idx)
    keep_u = ~always
    if short.size:
        keep_u[short] = False  # unbalanced units are reported at the end, never accumulated
    wy = np.zeros((n_u, t_len))
    ok_rows = on & keep_u[code]
    wy[code[ok_rows], tpos[ok_rows]] = y[ok_rows]
    _accumulate(st, uids, ug, w, wy, keep_u)
    st.rows += n_rows


def _accumulate(
    st: _State,
    uids: np.ndarray,
    ug: np.ndarray,
    w: np.ndarray,
    ymat: np.ndarray,
    keep_u: np.ndarray,
) -> None:
    """Add the kept units (outcomes ``ymat`` [n_u, T], weights, cohorts) to the statistics."""
    assert st.grid is not None
    grid = st.grid
    t_len = grid.size
    n_u = uids.size
    if st.acc is None:
        st.acc = CohortMoments.zeros(t_len + 1, t_len, st.biters, np.zeros(t_len))
        st.ymax = np.zeros(t_len + 1)
    slot = np.where(ug == -1, t_len, np.searchsorted(grid, np.maximum(ug, 0)))
    sel = np.flatnonzero(keep_u) if not keep_u.all() else None
    ys = ymat if sel is None else ymat[sel]
    ws = w if sel is None else w[sel]
    ss = slot if sel is None else slot[sel]
    if ys.shape[0]:
        yabs = np.abs(ys).max(axis=1)
        assert st.ymax is not None
        present = np.unique(ss)
        order = np.argsort(ss, kind="stable")
        bounds = np.searchsorted(ss[order], present)
        st.ymax[present] = np.maximum(st.ymax[present], np.maximum.reduceat(yabs[order], bounds))
        wz = ys * ws[:, None] if st.roles.weightsname is not None else ys
        if st.acc.cnt.sum() == 0:
            tot = ws.sum()
            if tot > 0:  # shift near the mean: accurate second moments
                st.acc.shift[:] = wz.sum(axis=0) / tot
        wpos = ws[ws > 0]
        if wpos.size:
            st.wmin, st.wmax = min(st.wmin, float(wpos.min())), max(st.wmax, float(wpos.max()))
        us = uids if sel is None else uids[sel]
        hashed = hash_ids(us) if st.biters else None
        st.acc.add(wz, ws, ss, hashed, st.key)
    if st.first_id is None:
        st.first_id = uids[0]
    st.last_id = uids[-1]
    st.units += n_u


def _unit_cohorts(st: _State, ug: np.ndarray, uids: np.ndarray) -> np.ndarray:
    """Always-treated and off-grid checks on the units' cohorts; return the always mask."""
    r = st.roles
    assert st.grid is not None
    grid = st.grid
    always = (ug != -1) & (ug <= grid[0])
    if always.any():
        if not st.drop_always_treated:
            raise _always_treated_error(r.gname, int(grid[0]), ug[always], uids[always])
        st.dropped.extend(uids[always][: max(0, 5 - len(st.dropped))].tolist())
        st.dropped_n += int(always.sum())
        st.dropped_cohorts.update(int(v) for v in np.unique(ug[always]))
    treated = ug[(ug != -1) & ~always]
    off = treated[~np.isin(treated, grid)]
    if off.size and st.extra_steps:  # steps missing from the first unit: unbalanced (below)
        off = off[~np.isin(off, np.fromiter(st.extra_steps, dtype=np.int64))]
    if off.size:
        raise _off_grid_error(r.gname, r.tname, np.unique(off), off.size)
    return always


def _process_regular(
    st: _State,
    ids: np.ndarray,
    cols: dict[str, tuple[np.ndarray, np.ndarray]],
    uids: np.ndarray,
    steps: np.ndarray,
) -> bool:
    """Fast path: every unit has the grid's steps in order (rows reshape to ``[n_u, T]``).

    Checks run on per-unit values after checking constancy on the raw values; returns False
    (the general path then runs and raises the exact error) when a check fails.
    """
    r = st.roles
    assert st.grid is not None
    n_u, t_len = uids.size, st.grid.size

    def per_unit(name: str) -> tuple[np.ndarray, np.ndarray] | None:
        v, nul = cols[name]
        v2, n2 = v.reshape(n_u, t_len), nul.reshape(n_u, t_len)
        first, nfirst = v2[:, :1], n2[:, :1]
        if v.dtype.kind == "f":
            same = (v2 == first) | (np.isnan(v2) & np.isnan(first))
        else:
            same = v2 == first
        if not (same.all() and (n2 == nfirst).all()):
            return None
        return v2[:, 0], n2[:, 0]

    gu = per_unit(r.gname)
    if gu is None or (gu[0].dtype.kind not in "iuf"):
        return False
    ug = _cohorts(gu[0], gu[1], r.gname)
    if r.weightsname is not None:
        wu = per_unit(r.weightsname)
        if wu is None or wu[0].dtype.kind not in "iuf" or wu[1].any():
            return False
        w = wu[0].astype(np.float64)
        if not np.isfinite(w).all() or (w < 0).any():
            return False
    else:
        w = np.ones(n_u)
    yv, ynull = cols[r.yname]
    if yv.dtype.kind not in "iuf" or ynull.any():
        return False
    y = yv.astype(np.float64, copy=False).reshape(n_u, t_len)
    if not np.isfinite(y).all():
        return False
    always = _unit_cohorts(st, ug, uids)
    st.counts.append(np.full(n_u, t_len, dtype=np.int32))
    lst = st.short_counts.setdefault(t_len, [])
    lst.extend((st.units + i, uids[i]) for i in range(min(5 - len(lst), n_u)))
    _accumulate(st, uids, ug, w, y, ~always)
    return True


def _ids(vals: np.ndarray, nulls: np.ndarray, idname: str, row0: int) -> np.ndarray:
    if nulls.any():
        raise _unit_na_error(idname, np.flatnonzero(nulls) + row0)
    if vals.dtype.kind == "O":
        kind = pd.api.types.infer_dtype(vals, skipna=True)
        if kind in ("mixed", "mixed-integer"):
            raise _unit_mixed_error(idname, kind)
    return vals


def _unsorted(idname: str, prev: Any, nxt: Any, row: int) -> PanelSchemaError:
    return PanelSchemaError(
        f"Streaming needs the rows sorted by unit ({idname!r}): unit {_py(nxt)!r} at row {row} "
        f"comes after unit {_py(prev)!r}. Write the data sorted by {idname!r} (e.g. "
        f"df.sort_values({idname!r}).to_parquet(...), or ORDER BY {idname} in SQL), or fit it "
        "in memory with att_gt on a DataFrame."
    )


def _scan(
    st: _State,
    batches: Iterator[Any],
    columns: Sequence[str],
    progress: Callable[[StreamProgress], None] | None,
    total_rows: int | None,
) -> None:
    """Read every batch; process complete units and carry the last one to the next batch."""
    r = st.roles
    carry: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
    row0 = 0
    t0 = time.perf_counter()
    prog = StreamProgress(total_rows=total_rows)
    for batch in batches:
        cols = {c: _np(batch.column(c)) for c in columns}
        cols[r.idname] = (_ids(*cols[r.idname], r.idname, row0), cols[r.idname][1])
        row0 += batch.num_rows
        if carry is not None:
            cols = {
                c: (np.concatenate([carry[c][0], v[0]]), np.concatenate([carry[c][1], v[1]]))
                for c, v in cols.items()
            }
        ids = cols[r.idname][0]
        if ids.size == 0:
            continue
        if ids.size > 1:
            dec = np.flatnonzero(ids[1:] < ids[:-1])
            if dec.size:
                i = int(dec[0])
                raise _unsorted(r.idname, ids[i], ids[i + 1], row0 - ids.size + i + 1)
        last = np.flatnonzero(ids != ids[-1])
        cut = int(last[-1]) + 1 if last.size else 0
        if cut:
            _process(st, ids[:cut], {c: (v[0][:cut], v[1][:cut]) for c, v in cols.items()})
        carry = {c: (v[0][cut:], v[1][cut:]) for c, v in cols.items()}
        prog.units, prog.rows, prog.batches = st.units, row0, prog.batches + 1
        prog.elapsed_s = time.perf_counter() - t0
        if progress is not None:
            progress(prog)
    if carry is not None and carry[r.idname][0].size:
        _process(st, carry[r.idname][0], carry)
    if progress is not None:
        prog.units, prog.rows, prog.elapsed_s = st.units, row0, time.perf_counter() - t0
        progress(prog)


def _check_balance(st: _State) -> None:
    assert st.grid is not None
    counts = np.concatenate(st.counts)
    n_final = st.grid.size + len(st.extra_steps)
    n_missing = n_final - counts
    if not n_missing.any():
        return
    r = st.roles
    short_n = int(np.count_nonzero(n_missing))
    cand = sorted(
        (pos, uid) for c, lst in st.short_counts.items() if c < n_final for pos, uid in lst
    )
    examples = ((uid, n_missing[pos]) for pos, uid in cand[:5])
    raise _unbalanced_error(r.idname, r.tname, short_n, n_final, int(n_missing.sum()), examples)


def att_gt_stream(
    source: Any,
    yname: str,
    tname: str,
    idname: str,
    gname: str,
    *,
    xformla: str | None = None,
    control_group: ControlGroup = "nevertreated",
    anticipation: int = 0,
    base_period: BasePeriod = "varying",
    est_method: EstMethod = "dr",
    allow_unbalanced_panel: bool = False,
    clustervars: str | Sequence[str] | None = None,
    weightsname: str | None = None,
    bstrap: bool = True,
    biters: int = 1000,
    cband: bool = True,
    alp: float = 0.05,
    seed: int | np.random.Generator | None = None,
    drop_always_treated: bool = False,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    progress: Callable[[StreamProgress], None] | None = None,
) -> AttGtResult:
    """ATT(g, t) on a panel read in bounded batches (same arguments and result as ``att_gt``).

    Parameters
    ----------
    source
        Parquet file or folder of shards, pyarrow ``Dataset``/``Table``/``RecordBatchReader``,
        Polars ``LazyFrame``/``DataFrame``, DuckDB relation or pandas ``DataFrame``. Rows must be
        sorted by unit (checked: :class:`~causalmem.errors.PanelSchemaError` otherwise).
    yname, tname, idname, gname, xformla, control_group, anticipation, base_period, est_method
        As :func:`~causalmem.att_gt`.
    allow_unbalanced_panel, clustervars, weightsname, bstrap, biters, cband, alp, seed
        As :func:`~causalmem.att_gt`; the bootstrap multipliers are keyed by (seed, unit id),
        so the draws equal the in-memory engine's whatever the batches or shards.
    drop_always_treated
        As :func:`~causalmem.att_gt`.
    batch_rows
        Rows per batch read (memory bound: about ``batch_rows`` x (columns + T) x 8 bytes for
        the batch, plus ``(T + 1) T (T + biters)`` x 8 bytes of statistics).
    progress
        Called with a :class:`StreamProgress` after each batch.

    Returns
    -------
    AttGtResult
        Its engine keeps only cohort statistics (no per-unit rows).

    Examples
    --------
    >>> from causalmem import simulate_panel
    >>> df = simulate_panel(seed=1).frame.sort_values(["unit", "step"])
    >>> res = att_gt_stream(df, "y", "step", "unit", "cohort", bstrap=False, batch_rows=500)
    >>> bool((res.att == res.att).any())
    True
    """
    from causalmem.estimators.att_gt import _check_spec

    kw: dict[str, Any] = dict(
        data=source,
        yname=yname,
        tname=tname,
        idname=idname,
        gname=gname,
        xformla=xformla,
        control_group=control_group,
        anticipation=anticipation,
        base_period=base_period,
        est_method=est_method,
        allow_unbalanced_panel=allow_unbalanced_panel,
        clustervars=clustervars,
        weightsname=weightsname,
        bstrap=bstrap,
        biters=biters,
        cband=cband,
        alp=alp,
        seed=seed,
        drop_always_treated=drop_always_treated,
    )
    spec = AttGtSpec.from_kwargs(kw)
    extra_cl = _check_spec(spec)
    for role, name in (("yname", yname), ("tname", tname), ("idname", idname), ("gname", gname)):
        if not isinstance(name, str):
            raise TypeError(f"{role} must be a column name (str); got {name!r}.")
    if xformla is not None or extra_cl:
        return _fallback(kw, "covariates (xformla)" if xformla else "a cluster variable")
    columns = [idname, tname, gname, yname] + ([weightsname] if weightsname else [])
    if len(set(columns)) < len(columns):
        raise PanelSchemaError(
            f"The same column is used in two roles: {columns}. Give each role its own column "
            "(copy the column under a new name if needed)."
        )
    key = bootstrap_key(spec.rng()) if spec.bstrap else 0
    total = _total_rows(
        source if not isinstance(source, str | os.PathLike) else _dataset_or_none(source)
    )
    st = scan_source(
        source,
        _Roles(idname, tname, gname, yname, weightsname),
        biters=spec.biters if spec.bstrap else 0,
        key=key,
        drop_always_treated=drop_always_treated,
        batch_rows=batch_rows,
        progress=progress,
        total_rows=total,
    )
    return combine_states(spec, kw, [st])


def scan_source(
    source: Any,
    roles: _Roles,
    *,
    biters: int,
    key: int,
    drop_always_treated: bool,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    progress: Callable[[StreamProgress], None] | None = None,
    total_rows: int | None = None,
) -> _State:
    """Validate and accumulate one source: a file, a shard, a dataset (the map step)."""
    columns = [roles.idname, roles.tname, roles.gname, roles.yname]
    columns += [roles.weightsname] if roles.weightsname else []
    st = _State(roles=roles, biters=biters, key=key, drop_always_treated=drop_always_treated)
    _scan(st, read_batches(source, columns, batch_rows), columns, progress, total_rows)
    return st


def _merge_states(states: Sequence[_State]) -> _State:
    """Sum the statistics of shards given in unit order (the reduce step)."""
    first = states[0]
    r = first.roles
    for a, b in zip(states[:-1], states[1:], strict=True):
        if a.last_id is not None and b.first_id is not None and not a.last_id < b.first_id:
            raise PanelSchemaError(
                f"Streaming needs the rows sorted by unit ({r.idname!r}) across shards: a shard "
                f"ending with unit {a.last_id!r} comes before one starting with unit "
                f"{b.first_id!r} (units {b.first_id!r}..{a.last_id!r} overlap or are split "
                "between shards). Write each unit's rows into one shard, shards in unit order."
            )
    for a, b in zip(states[:-1], states[1:], strict=True):
        if not np.array_equal(a.grid, b.grid):  # type: ignore[arg-type]
            raise UnbalancedPanelError(
                f"Unit column {r.idname!r}: shards have different step grids "
                f"{_show(a.grid if a.grid is not None else [])} and "
                f"{_show(b.grid if b.grid is not None else [])}; the panel is unbalanced. Pass "
                "allow_unbalanced_panel=True (in-memory path) or complete the panel."
            )
    out = _State(
        roles=r, biters=first.biters, key=first.key, drop_always_treated=first.drop_always_treated
    )
    out.grid = first.grid
    accs = [s.acc for s in states if s.acc is not None]
    merged = accs[0]
    for part in accs[1:]:
        merged = merged.merge(part)
    out.acc = merged
    ymaxes = [s.ymax for s in states if s.ymax is not None]
    out.ymax = np.max(np.stack(ymaxes), axis=0) if ymaxes else None
    out.wmin = min(s.wmin for s in states)
    out.wmax = max(s.wmax for s in states)
    offset = 0
    for s in states:
        for c, lst in s.short_counts.items():
            dst = out.short_counts.setdefault(c, [])
            dst.extend((pos + offset, uid) for pos, uid in lst)
            dst.sort()
            del dst[5:]
        offset += s.units
        out.counts.extend(s.counts)
        out.extra_steps |= s.extra_steps
        out.dropped.extend(s.dropped)
        out.dropped_n += s.dropped_n
        out.units += s.units
        out.rows += s.rows
    out.dropped = out.dropped[:5]
    out.first_id, out.last_id = first.first_id, states[-1].last_id
    return out


def combine_states(spec: AttGtSpec, kw: dict[str, Any], states: Sequence[_State]) -> AttGtResult:
    """Reduce the shards' statistics and finish the estimation (shared by Ray and streaming)."""
    states = [s for s in states if s.units]
    if not states:
        from causalmem.errors import EmptyPanelError

        raise EmptyPanelError(
            "The panel has no rows; pass a long frame with one row per (unit, step)."
        )
    st = _merge_states(states) if len(states) > 1 else states[0]
    assert st.grid is not None and st.acc is not None and st.ymax is not None
    if spec.weightsname is not None and st.wmax <= 0:
        raise WeightsError(
            f"Weights column {spec.weightsname!r} is zero in all {st.rows} rows; at least one "
            "unit needs a positive weight."
        )
    if st.extra_steps or min(st.short_counts) < st.grid.size:
        if kw.get("allow_unbalanced_panel"):
            return _fallback(kw, "an unbalanced panel")
        _check_balance(st)
    if st.dropped_n:
        warnings.warn(
            f"Dropped {st.dropped_n} always-treated units (cohort <= first step "
            f"{int(st.grid[0])} in {spec.gname!r}): {_show(st.dropped, st.dropped_n)}.",
            CausalmemWarning,
            stacklevel=3,
        )
    return finish_stream(spec, st.acc, st.grid, st.ymax, (st.wmin, st.wmax))


def _dataset_or_none(path: Any) -> Any:
    try:
        return _parquet_dataset(path)
    except Exception:  # pragma: no cover - the scan reports the real problem
        return None


def _fallback(kw: dict[str, Any], why: str) -> AttGtResult:
    """Read the role columns into memory and run the in-memory engine (with a message)."""
    from causalmem.estimators.att_gt import att_gt

    warnings.warn(
        f"att_gt_stream: {why} needs the in-memory engine; reading the role columns into "
        "memory (the slower path: memory grows with the number of units).",
        CausalmemWarning,
        stacklevel=3,
    )
    kw = dict(kw)
    source = kw.pop("data")
    frame = _to_pandas(source, kw)
    return att_gt(frame, **kw)


def _to_pandas(source: Any, kw: dict[str, Any]) -> pd.DataFrame:
    import pyarrow as pa

    if kw.get("xformla"):
        cols = None  # a formula may use any column
    else:
        cols = [kw["idname"], kw["tname"], kw["gname"], kw["yname"]]
        cols += [kw["weightsname"]] if kw.get("weightsname") else []
        cl = kw.get("clustervars")
        cols += [cl] if isinstance(cl, str) else list(cl or [])
        cols = list(dict.fromkeys(cols))
    if cols is None:
        if isinstance(source, str | os.PathLike):
            return _parquet_dataset(source).to_table().to_pandas()
        cols = _all_columns(source)
    batches = list(read_batches(source, cols, DEFAULT_BATCH_ROWS))
    if not batches:
        return pd.DataFrame({c: [] for c in cols})
    return pa.Table.from_batches(batches).to_pandas()


def _all_columns(source: Any) -> list[str]:
    if hasattr(source, "collect_schema"):
        return list(source.collect_schema().names())
    if hasattr(source, "schema") and hasattr(source.schema, "names"):
        return list(source.schema.names)
    if hasattr(source, "columns"):
        return [str(c) for c in source.columns]
    raise TypeError(f"Cannot list the columns of a {type(source).__name__}.")


def finish_stream(
    spec: AttGtSpec,
    acc: CohortMoments,
    grid: np.ndarray,
    ymax: np.ndarray,
    w_range: tuple[float, float],
) -> AttGtResult:
    """Turn accumulated statistics (slots = grid positions, last = never) into the result.

    Applies ``att_gt``'s window rules (no never-treated units, cohorts without a base period)
    on the statistics, recentres them and runs the shared inference of ``att_gt``.
    """
    from causalmem.estimators.att_gt import _finish, _layout, _window_cohorts

    t_len = grid.size
    present = acc.cnt > 0
    tlist = grid.astype(np.float64)
    glist = tlist[np.flatnonzero(present[:t_len])]
    has_never = bool(present[t_len])
    periods = np.arange(t_len)
    never_slots = [t_len]
    keep_t, kept_g = _window_cohorts(spec, tlist, glist, has_never, stacklevel=4)
    if keep_t is not None:
        periods = np.flatnonzero(keep_t)
        tlist = tlist[keep_t]
        late = glist[glist > tlist[-1]]
        never_slots += [int(np.searchsorted(grid, g)) for g in late]
    glist = kept_g
    cells, _ = _layout(spec, tlist, glist, np.zeros((0, tlist.size)), None, False)
    slots = [np.array([int(np.searchsorted(grid, g))]) for g in glist]
    slots.append(np.array(never_slots, dtype=np.int64))
    stats = acc.select(slots, periods).recentre()
    n_units = int(stats.cnt.sum())
    engine = StreamedIF(stats, cells, n_units)
    used = np.concatenate(slots)
    y_scale = float(ymax[used].max()) if used.size else 1.0
    kb = glist.size + 1
    k_idx = np.flatnonzero(stats.cnt > 0)
    pg = stats.w[:-1] / n_units
    return _finish(
        spec,
        cells,
        engine,
        n_units,
        [],
        n_units=n_units,
        y_scale=y_scale,
        k_idx=k_idx,
        w=stats.w[k_idx],
        w_range=np.array([w_range[0], w_range[1]]) if np.isfinite(w_range[0]) else np.ones(1),
        pg=pg[: kb - 1],
    )
