"""Option aliases (``Literal``) and their validation at the API boundary."""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from lmecon.options import as_name_tuple as as_name_tuple
from lmecon.options import check_literal as check_literal

Float64Array: TypeAlias = npt.NDArray[np.float64]
Float32Array: TypeAlias = npt.NDArray[np.float32]
FloatArray: TypeAlias = npt.NDArray[np.floating[Any]]
Int64Array: TypeAlias = npt.NDArray[np.int64]
BoolArray: TypeAlias = npt.NDArray[np.bool_]

ControlGroup = Literal["nevertreated", "notyettreated"]
BasePeriod = Literal["varying", "universal"]
EstMethod = Literal["dr", "reg", "ipw"]
AggType = Literal["simple", "dynamic", "group", "calendar"]
InferenceKind = Literal["analytic", "bootstrap"]
BandKind = Literal["pointwise", "uniform"]

# estimators
EventEstimator = Literal["twfe", "sunab", "diff", "simple_diff"]
BayesModel = Literal["cells", "units"]
Pooling = Literal["rw", "gp"]
Sampler = Literal["auto", "pymc", "nutpie"]

# analysis
CellSet = Literal["all", "post", "post_first_epoch"]
CorrMethod = Literal["pearson", "spearman"]
Holdout = Literal["alternate", "last"]

# panel
BeyondCutoff = Literal["raise", "na"]

# scoring
BatchSize = int | Literal["auto"]
