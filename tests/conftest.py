from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

# One BLAS thread: many small products; on a shared 2-core machine two threads are slower.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _torch_default_dtype_unchanged() -> Iterator[None]:
    """Fail a test that leaves torch's default dtype changed (it would leak into later tests).

    A third-party import can do it (``honestdid`` sets float64 at import): such a test must
    restore it, as ``tests/causalmem/analysis/test_sensitivity.py`` does. Torch is not imported
    here; a test that never loaded it is not checked.
    """
    torch = sys.modules.get("torch")
    before = torch.get_default_dtype() if torch is not None else None
    yield
    torch = sys.modules.get("torch")
    if torch is None:
        return
    after = torch.get_default_dtype()
    if before is None:
        before = torch.float32
    if after != before:
        torch.set_default_dtype(before)
        pytest.fail(f"the test changed torch's default dtype from {before} to {after}")
