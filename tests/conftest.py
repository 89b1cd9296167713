from __future__ import annotations

import os

# One BLAS thread: many small products; on a shared 2-core machine two threads are slower.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
