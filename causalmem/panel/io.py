"""Parquet persistence of a :class:`~causalmem.panel.Panel` with its schema inside the file.

A panel is one parquet file. Its :class:`~causalmem.panel.PanelSchema` and provenance are
stored as parquet key-value metadata under the key ``b"causalmem"`` as JSON::

    {"format": "causalmem.panel", "schema": {...PanelSchema.to_dict()...}, "meta": {...}}

Nothing is encoded in the file name. Writes are atomic: the table is written to a temporary
file in the target directory, flushed to disk and moved into place with :func:`os.replace`;
on failure the temporary file is removed and an existing file at the target is left intact.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from causalmem.errors import PanelFileError, PanelSchemaError
from causalmem.panel.panel import Panel
from causalmem.panel.schema import SCHEMA_VERSION, PanelSchema
from lmecon.atomic import atomic_path

__all__ = ["METADATA_KEY", "read_panel", "write_panel"]

METADATA_KEY = b"causalmem"
_FORMAT = "causalmem.panel"


def write_panel(panel: Panel, path: str | os.PathLike[str]) -> Path:
    """Write a panel to one parquet file, atomically, with its schema and provenance inside.

    Parameters
    ----------
    panel
        The panel to write.
    path
        Target file (conventionally ``*.parquet``). Its directory must exist. An existing
        file is replaced only once the new one is completely written.

    Returns
    -------
    pathlib.Path
        The path written.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from causalmem.panel import simulate_panel, read_panel
    >>> panel = simulate_panel(n_never=5, units_per_cohort=2).to_panel()
    >>> with tempfile.TemporaryDirectory() as d:
    ...     out = write_panel(panel, pathlib.Path(d) / "panel.parquet")
    ...     read_panel(out).equals(panel)
    True
    """
    if not isinstance(panel, Panel):
        raise TypeError(f"write_panel expects a Panel; got {type(panel).__name__}.")
    target = Path(path)
    payload = {
        "format": _FORMAT,
        "schema": panel.schema.to_dict(),
        "meta": dict(panel.meta),
    }
    try:
        blob = json.dumps(payload, allow_nan=False, sort_keys=True).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise TypeError(f"Panel meta is not JSON-serialisable: {exc}.") from exc
    table = pa.Table.from_pandas(panel.frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), METADATA_KEY: blob})

    # Keeps the existing file's mode, else rw-r--r--.
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp)
    return target


def _payload(path: Path, raw: dict[bytes, bytes] | None) -> dict[str, Any]:
    if not raw or METADATA_KEY not in raw:
        raise PanelSchemaError(
            f"{str(path)!r} has no causalmem metadata (parquet key {METADATA_KEY!r}); it was not "
            "written by causalmem.panel.write_panel. Load it with pandas and build the panel "
            "with Panel.from_frame(...)."
        )
    try:
        payload = json.loads(raw[METADATA_KEY])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PanelSchemaError(f"{str(path)!r} has corrupt causalmem metadata: {exc}.") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("schema"), dict):
        raise PanelSchemaError(
            f"{str(path)!r}: causalmem metadata lacks a 'schema' object; re-write the panel."
        )
    version = str(payload["schema"].get("version", "<missing>"))
    if version != SCHEMA_VERSION:
        raise PanelSchemaError(
            f"{str(path)!r} has panel schema version {version!r}, but this release of "
            f"causalmem reads version {SCHEMA_VERSION!r}. Re-create the panel with this release "
            "(or read it with the causalmem release that wrote it)."
        )
    return payload


def read_panel(path: str | os.PathLike[str]) -> Panel:
    """Read a panel written by :func:`write_panel`, restoring schema and provenance.

    The frame is re-validated with the options recorded at creation.

    Parameters
    ----------
    path
        Parquet file written by :func:`write_panel`.

    Returns
    -------
    Panel

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    PanelFileError
        If the file is a folder, a CSV/text file, or a truncated or damaged parquet file.
    PanelSchemaError
        If the file has no causalmem metadata, an unsupported schema version, or its data
        fail validation (a subclass of :class:`PanelSchemaError`).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from causalmem.panel import simulate_panel
    >>> panel = simulate_panel(n_never=5, units_per_cohort=2).to_panel()
    >>> with tempfile.TemporaryDirectory() as d:
    ...     read_panel(write_panel(panel, pathlib.Path(d) / "p.parquet")).schema == panel.schema
    True
    """
    source = Path(path)
    raw = _read_parquet_metadata(source)
    payload = _payload(source, raw)
    schema = PanelSchema.from_dict(payload["schema"])
    meta = payload.get("meta", {})
    if not isinstance(meta, dict):
        raise PanelSchemaError(f"{str(source)!r}: causalmem 'meta' is not an object.")
    try:
        frame = pq.read_table(source).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise _unreadable(source, exc) from exc
    return Panel._restore(frame, schema, meta)


_REWRITE = (
    "re-create it with causalmem.panel.write_panel (or restore it from a backup or the run that "
    "wrote it)"
)


def _unreadable(source: Path, exc: BaseException) -> PanelFileError:
    """Build the error for a file that exists but cannot be read as parquet."""
    try:
        with open(source, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        head = b""
    size = source.stat().st_size if source.is_file() else 0
    if source.suffix.lower() in {".csv", ".tsv", ".txt"} or (
        head and not head.startswith(b"PAR1") and b"," in head and b"\0" not in head
    ):
        return PanelFileError(
            f"{str(source)!r} is a text/CSV file, not a causalmem panel parquet. Load it with "
            "pandas.read_csv, build the panel with causalmem.Panel.from_frame(df, unit=..., "
            "step=..., cohort=..., outcomes=...) and save it with causalmem.write_panel."
        )
    if head.startswith(b"PAR1"):
        return PanelFileError(
            f"{str(source)!r} ({size:,} bytes) is a damaged or truncated parquet file "
            f"({exc}); {_REWRITE}."
        )
    return PanelFileError(
        f"{str(source)!r} ({size:,} bytes) is not a parquet file ({exc}); pass a panel "
        "written by causalmem.panel.write_panel."
    )


def _read_parquet_metadata(source: Path) -> dict[bytes, bytes] | None:
    """Return the parquet key-value metadata; a one-sentence error if the file is unreadable."""
    if not source.exists():
        raise FileNotFoundError(
            f"Panel file {str(source)!r} does not exist; pass the path of a panel parquet "
            "written by causalmem (e.g. OUT/panel.parquet of causalmem demo)."
        )
    if source.is_dir():
        raise PanelFileError(
            f"{str(source)!r} is a folder; pass one panel parquet file inside it "
            "(e.g. panel.parquet)."
        )
    try:
        metadata: dict[bytes, bytes] | None = pq.read_schema(source).metadata
    except (pa.ArrowException, OSError) as exc:
        raise _unreadable(source, exc) from exc
    return metadata
