"""Flat domain exceptions and warnings.

Every error subclasses :class:`CausalmemError` and the built-in it refines (``ValueError`` or
``TypeError``), so ``except ValueError`` keeps working for callers who do not import these.
Messages name the column, show the offending values and say how to fix the input.
"""

from __future__ import annotations

__all__ = [
    "AlwaysTreatedError",
    "CausalmemError",
    "CausalmemWarning",
    "CheckpointCompatibilityError",
    "ClusterError",
    "CohortError",
    "CovariateError",
    "DuplicateKeyError",
    "EmptyPanelError",
    "FormulaError",
    "GroundTruthError",
    "IdentificationError",
    "MissingColumnError",
    "NonFiniteScoresError",
    "OptionError",
    "OutcomeError",
    "PanelFileError",
    "PanelSchemaError",
    "ShardIntegrityError",
    "SingularDesignError",
    "StepError",
    "UnbalancedPanelError",
    "UnitError",
    "WeightsError",
]


class CausalmemError(Exception):
    """Base class of every error raised by causalmem."""


class PanelSchemaError(CausalmemError, ValueError):
    """The long-format panel does not satisfy its schema."""


class EmptyPanelError(PanelSchemaError):
    """The panel has no rows."""


class MissingColumnError(PanelSchemaError, KeyError):
    """A column named by the caller is not in the frame."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return str(self.args[0]) if self.args else ""


class DuplicateKeyError(PanelSchemaError):
    """Two or more rows share the same (unit, step) key."""


class UnitError(PanelSchemaError):
    """The unit identifier column is missing values or has an unusable type."""


class StepError(PanelSchemaError):
    """The step (time) column holds negative, non-integer, missing or non-numeric values."""


class CohortError(PanelSchemaError):
    """The cohort (treatment step) column is inconsistent."""


class AlwaysTreatedError(CohortError):
    """Units are treated at or before the first observed step, so they have no pre-period."""


class OutcomeError(PanelSchemaError):
    """An outcome column is non-numeric, NaN or infinite."""


class UnbalancedPanelError(PanelSchemaError):
    """Some units are not observed at every step and ``allow_unbalanced_panel`` is False."""


class WeightsError(PanelSchemaError):
    """Sampling weights are missing, negative, non-finite or vary within a unit."""


class ClusterError(PanelSchemaError):
    """A cluster variable is missing or varies within a unit."""


class CovariateError(PanelSchemaError):
    """A covariate formula names unknown columns or yields non-finite values."""


class FormulaError(CausalmemError, ValueError):
    """A model formula is malformed or names unknown columns."""


class SingularDesignError(CausalmemError, ValueError):
    """Regressors are collinear (e.g. absorbed by the fixed effects)."""


class IdentificationError(CausalmemError, ValueError):
    """The requested estimand is not identified from the data (e.g. no comparison units)."""


class CausalmemWarning(UserWarning):
    """Warnings about data handling or inference choices the caller should know about."""


class GroundTruthError(CausalmemError, RuntimeError):
    """Paired lab runs meant to be bit-identical before the first swapped batch are not."""


class PanelFileError(PanelSchemaError):
    """A file given as a panel cannot be read as one (truncated, not parquet, e.g. a CSV)."""


class NonFiniteScoresError(CausalmemError, ValueError):
    """A checkpoint produced NaN or infinite logits, so its scores would be meaningless."""


class ShardIntegrityError(CausalmemError, ValueError):
    """A scoring folder's shards do not match its manifest (missing, damaged or changed)."""


class CheckpointCompatibilityError(CausalmemError, ValueError):
    """A checkpoint cannot score the instances (vocabulary, context) or differs from the others."""


class OptionError(CausalmemError, ValueError):
    """An option is out of range or contradicts another (``min_e > max_e``, ``biters=1``)."""
