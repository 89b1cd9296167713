"""lmecon: the small shared base of ``causalmem`` and ``steer``.

It imports neither package. Modules (each imported on its own; nothing runs at import time):

* :mod:`~lmecon.atomic`: atomic file writes (text, bytes, parquet, any writer via a temp path).
* :mod:`~lmecon.fetch`: the cache directory and checksummed downloads of PyPI files.
* :mod:`~lmecon.provenance`: library versions, UTC time stamps, JSON-safe values.
* :mod:`~lmecon.options`: validation of ``Literal`` options and column-name arguments.
* :mod:`~lmecon.lazy`: lazy package exports.
* :mod:`~lmecon.charts`: Altair import, tidy-column checks and atomic chart saving.
* :mod:`~lmecon.result`: the :class:`~lmecon.result.Result` protocol of every result.
"""

from __future__ import annotations

__all__: list[str] = []
