"""The :class:`Panel` value: a validated long frame, its column roles and its provenance."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from causalmem.errors import MissingColumnError, PanelSchemaError
from causalmem.panel.checks import CheckedPanel, validate_long
from causalmem.panel.schema import PanelSchema

__all__ = ["Panel"]


def _causalmem_version() -> str:
    try:
        return metadata.version("causalmem")
    except metadata.PackageNotFoundError:  # pragma: no cover - source checkout without install
        return "unknown"


def _provenance(
    user_meta: Mapping[str, Any] | None, validation: Mapping[str, Any]
) -> dict[str, Any]:
    try:
        user = json.loads(json.dumps(dict(user_meta or {}), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"meta must be JSON-serialisable (str keys; str/int/float/bool/None, lists, dicts) "
            f"because it is stored in the parquet file: {exc}."
        ) from exc
    return {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "causalmem_version": _causalmem_version(),
        "pandas_version": pd.__version__,
        "numpy_version": np.__version__,
        "pyarrow_version": pa.__version__,
        "validation": dict(validation),
        "user": user,
    }


def _check(
    data: pd.DataFrame,
    schema: PanelSchema,
    *,
    allow_unbalanced_panel: bool,
    drop_always_treated: bool = False,
) -> CheckedPanel:
    return validate_long(
        data,
        idname=schema.unit,
        tname=schema.step,
        gname=schema.cohort,
        ynames=schema.outcomes,
        weightsname=schema.weights,
        clustervars=schema.clusters,
        xnames=schema.covariates,
        allow_unbalanced_panel=allow_unbalanced_panel,
        drop_always_treated=drop_always_treated,
    )


@dataclass(frozen=True, slots=True, eq=False)
class Panel:
    """A validated long (unit × step) panel with its schema and provenance.

    Build it with :meth:`from_frame` or :func:`~causalmem.panel.read_panel`; the constructor
    itself does not validate. Treat ``frame`` as read-only (use :meth:`to_frame` for a copy).

    Attributes
    ----------
    frame
        The validated frame (see :class:`~causalmem.panel.CheckedPanel`): only the schema's
        columns, sorted by (unit, step), cohort ``Int64`` with ``<NA>`` = never treated.
    schema
        The column roles.
    meta
        JSON-serialisable provenance: ``created_at`` (ISO 8601, UTC), ``causalmem_version``,
        ``pandas_version``, ``numpy_version``, ``pyarrow_version``, ``validation`` (the
        options used and the number of dropped always-treated units) and ``user`` (the
        caller's ``meta``).
    """

    frame: pd.DataFrame
    schema: PanelSchema
    meta: Mapping[str, Any]

    @classmethod
    def from_frame(
        cls,
        data: pd.DataFrame,
        *,
        unit: str,
        step: str,
        cohort: str,
        outcomes: str | Iterable[str],
        weights: str | None = None,
        clusters: str | Iterable[str] = (),
        covariates: str | Iterable[str] = (),
        allow_unbalanced_panel: bool = False,
        drop_always_treated: bool = False,
        meta: Mapping[str, Any] | None = None,
    ) -> Panel:
        """Validate a long frame and wrap it with its schema and provenance.

        Parameters
        ----------
        data
            Long frame, one row per (unit, step); never modified.
        unit, step, cohort
            Unit id, step and cohort (first treated step; NA/NaN/None/+inf = never) columns.
        outcomes
            One or more outcome columns.
        weights
            Optional time-invariant sampling weight column.
        clusters
            Optional time-invariant cluster columns (``unit`` itself is skipped).
        covariates
            Optional numeric covariate columns.
        allow_unbalanced_panel
            Accept units that are not observed at every step.
        drop_always_treated
            Drop units treated at or before the first step (with a warning) instead of raising.
        meta
            Optional JSON-serialisable user metadata (model name, metric, ...), stored under
            ``meta["user"]``.

        Returns
        -------
        Panel

        Raises
        ------
        PanelSchemaError
            Or one of its subclasses; see :func:`~causalmem.panel.validate_long`.

        Examples
        --------
        >>> import pandas as pd
        >>> df = pd.DataFrame({"u": [1, 1, 2, 2], "t": [1, 2, 1, 2],
        ...                    "g": [2, 2, None, None], "y": [0.0, 1.0, 0.5, 0.4]})
        >>> p = Panel.from_frame(df, unit="u", step="t", cohort="g", outcomes="y")
        >>> p.n_units, p.steps.tolist(), p.cohorts.tolist(), p.n_never
        (2, [1, 2], [2], 1)
        """
        clusters_t = (clusters,) if isinstance(clusters, str) else tuple(clusters)
        schema = PanelSchema(
            unit=unit,
            step=step,
            cohort=cohort,
            outcomes=outcomes,  # type: ignore[arg-type]  # normalised in __post_init__
            weights=weights,
            clusters=tuple(c for c in clusters_t if c != unit),
            covariates=covariates,  # type: ignore[arg-type]
        )
        checked = _check(
            data,
            schema,
            allow_unbalanced_panel=allow_unbalanced_panel,
            drop_always_treated=drop_always_treated,
        )
        validation = {
            "allow_unbalanced_panel": bool(allow_unbalanced_panel),
            "drop_always_treated": bool(drop_always_treated),
            "n_dropped_always_treated": int(checked.dropped_always_treated.size),
        }
        return cls(frame=checked.frame, schema=schema, meta=_provenance(meta, validation))

    @classmethod
    def _restore(cls, data: pd.DataFrame, schema: PanelSchema, meta: Mapping[str, Any]) -> Panel:
        """Re-validate a stored frame, keeping its schema and provenance (for ``read_panel``)."""
        validation = meta.get("validation", {}) if isinstance(meta, Mapping) else {}
        checked = _check(
            data,
            schema,
            allow_unbalanced_panel=bool(validation.get("allow_unbalanced_panel", False)),
        )
        return cls(frame=checked.frame, schema=schema, meta=dict(meta))

    @property
    def n_units(self) -> int:
        """Number of distinct units."""
        return int(self.frame[self.schema.unit].nunique())

    @property
    def steps(self) -> npt.NDArray[np.int64]:
        """Sorted unique steps (``int64``)."""
        return np.sort(pd.unique(self.frame[self.schema.step].to_numpy()))

    @property
    def cohorts(self) -> npt.NDArray[np.int64]:
        """Sorted unique treatment cohorts, excluding never-treated (``int64``)."""
        g = self.frame[self.schema.cohort]
        return np.sort(pd.unique(g[g.notna()].to_numpy(dtype=np.int64)))

    @property
    def n_never(self) -> int:
        """Number of never-treated units."""
        never = self.frame[self.schema.cohort].isna()
        return int(self.frame.loc[never, self.schema.unit].nunique())

    @property
    def is_balanced(self) -> bool:
        """Whether every unit is observed at every step."""
        return len(self.frame) == self.n_units * self.steps.size

    def outcome(self, name: str | None = None) -> pd.Series:
        """Return one outcome column as a new Series aligned with :attr:`frame`.

        Parameters
        ----------
        name
            Outcome name; may be omitted when the panel has exactly one outcome.

        Returns
        -------
        pandas.Series
            A copy of the outcome column (``float64``).

        Examples
        --------
        >>> import pandas as pd
        >>> df = pd.DataFrame({"u": [1, 1, 2, 2], "t": [1, 2, 1, 2],
        ...                    "g": [2, 2, None, None], "y": [0.0, 1.0, 0.5, 0.4]})
        >>> Panel.from_frame(df, unit="u", step="t", cohort="g", outcomes="y").outcome().sum()
        np.float64(1.9)
        """
        outcomes = self.schema.outcomes
        if name is None:
            if len(outcomes) != 1:
                raise PanelSchemaError(
                    f"The panel has {len(outcomes)} outcomes {list(outcomes)}; pass one name."
                )
            name = outcomes[0]
        if name not in outcomes:
            raise MissingColumnError(
                f"{name!r} is not an outcome of this panel; outcomes are {list(outcomes)}."
            )
        return self.frame[name].copy()

    def to_frame(self) -> pd.DataFrame:
        """Return a copy of the validated frame.

        Returns
        -------
        pandas.DataFrame

        Examples
        --------
        >>> import pandas as pd
        >>> df = pd.DataFrame({"u": [2, 2, 1, 1], "t": [2, 1, 2, 1],
        ...                    "g": [None, None, 2, 2], "y": [0.4, 0.5, 1.0, 0.0]})
        >>> Panel.from_frame(df, unit="u", step="t", cohort="g", outcomes="y").to_frame()["u"].tolist()
        [1, 1, 2, 2]
        """  # noqa: E501
        return self.frame.copy(deep=True)

    def equals(self, other: object) -> bool:
        """Whether ``other`` is a Panel with an equal frame (dtypes included), schema and meta.

        Parameters
        ----------
        other
            Object to compare.

        Returns
        -------
        bool

        Examples
        --------
        >>> import pandas as pd
        >>> df = pd.DataFrame({"u": [1, 1, 2, 2], "t": [1, 2, 1, 2],
        ...                    "g": [2, 2, None, None], "y": [0.0, 1.0, 0.5, 0.4]})
        >>> p = Panel.from_frame(df, unit="u", step="t", cohort="g", outcomes="y")
        >>> p.equals(p)
        True
        """
        return (
            isinstance(other, Panel)
            and self.schema == other.schema
            and dict(self.meta) == dict(other.meta)
            and self.frame.equals(other.frame)
            and list(self.frame.dtypes) == list(other.frame.dtypes)
        )

    def __repr__(self) -> str:
        return (
            f"Panel(units={self.n_units}, steps={self.steps.size}, rows={len(self.frame)}, "
            f"cohorts={self.cohorts.size}, never={self.n_never}, outcomes={self.schema.outcomes})"
        )
