"""Atomic file writes: a temporary file in the target's folder, fsync, then ``os.replace``.

A reader never sees a half-written file and a failure leaves nothing behind. One
implementation for every artefact the package writes (panels, shards, manifests, checkpoints,
reports, figures).

A process killed mid-write (``kill -9``, power loss) cannot clean up: it leaves its hidden
temporary file ``.<name>.<pid>-<random>.tmp``. Every later write of the same target removes
such leftovers once they are stale (their process is gone, or they are older than
:data:`STALE_AFTER_S`); readers ignore them because of their hidden ``.tmp`` names.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

__all__ = [
    "STALE_AFTER_S",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_parquet",
    "atomic_write_text",
    "remove_stale_temps",
]

STALE_AFTER_S = 3600.0
"""Age (seconds) after which a temporary file of unknown owner counts as a crash leftover."""

_LIVE: set[Path] = set()  # this process's temporary files still being written
_SUFFIX = re.compile(r"(?:(?P<pid>\d+)-)?[A-Za-z0-9_]+")  # [pid-] + mkstemp's random part


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # exists (another user's) or cannot tell: keep it
        return True
    return True


def _is_stale(path: Path, pid: int | None, now: float) -> bool:
    try:
        age = now - path.stat().st_mtime
    except OSError:
        return False
    if age > 24 * STALE_AFTER_S:
        return True
    if pid is None:  # written before temporary names carried the writer's pid
        return age > STALE_AFTER_S
    if pid == os.getpid():
        return path not in _LIVE
    return not _process_alive(pid)


def remove_stale_temps(target: str | os.PathLike[str]) -> list[Path]:
    """Remove the crash leftovers of earlier writes of ``target`` (see the module docstring).

    Parameters
    ----------
    target
        The final path whose temporary files (``.<name>.*.tmp`` in its folder) are inspected.

    Returns
    -------
    list of pathlib.Path
        The files removed. Temporary files of writes still in progress are kept.
    """
    target = Path(target)
    prefix = f".{target.name}."
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        m = _SUFFIX.fullmatch(name[len(prefix) : -len(".tmp")])
        if m is None or not entry.is_file(follow_symlinks=False):
            continue
        path = Path(entry.path)
        pid = int(m["pid"]) if m["pid"] else None
        if _is_stale(path, pid, now):
            try:
                path.unlink()
            except OSError:
                continue
            removed.append(path)
    return removed


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(target: str | os.PathLike[str], mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; move it into place when the block succeeds.

    Stale temporary files left by earlier, interrupted writes of ``target`` are removed first
    (:func:`remove_stale_temps`).

    Parameters
    ----------
    target
        Final path (its folder is created).
    mode
        File mode; default: the existing file's mode, else ``0o644``.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if mode is None:
        mode = target.stat().st_mode & 0o777 if target.exists() else 0o644
    remove_stale_temps(target)
    fd, name = tempfile.mkstemp(
        prefix=f".{target.name}.{os.getpid()}-", suffix=".tmp", dir=target.parent
    )
    os.close(fd)
    tmp = Path(name)
    _LIVE.add(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        _LIVE.discard(tmp)


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def atomic_write_text(target: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def atomic_write_parquet(target: str | os.PathLike[str], frame: pd.DataFrame) -> Path:
    """Write ``frame`` (without its index) as parquet atomically."""
    with atomic_path(target) as tmp:
        frame.to_parquet(tmp, index=False)
    return Path(target)
