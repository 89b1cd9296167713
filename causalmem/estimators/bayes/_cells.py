"""The modelled cells of an ATT(g, t) result and their sampling-covariance factors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from causalmem._numerics.cellcov import CellCovFactors, dense_factors, structured_factors
from causalmem._types import BoolArray, Float64Array, Int64Array
from causalmem.errors import IdentificationError

if TYPE_CHECKING:
    from causalmem.results.attgt import AttGtResult

# Dense fallback (not-yet-treated controls, covariates, unbalanced panels): an eigendecomposition
# of the J x J covariance per fit, so J is capped.
MAX_DENSE_CELLS = 3000
# Prior degrees of freedom of each cohort's per-period variances (moderated towards the pooled
# ones; limma-style), used by the cells model's sampling covariance.
VARIANCE_DF = 4.0


@dataclass(frozen=True, slots=True)
class _CellSet:
    """The modelled cells (layout indices) and their labels, in model order."""

    order: Int64Array
    y: Float64Array
    se: Float64Array
    post: BoolArray
    group: Float64Array
    time: Float64Array
    cohort_code: Int64Array  # into cohorts
    cohorts: Float64Array
    e_code: Int64Array  # into e_grid; -1 for pre cells
    e_grid: Float64Array

    @property
    def n(self) -> int:
        return int(self.order.size)

    def terms(self) -> list[str]:
        return [f"ATT({g:g},{t:g})" for g, t in zip(self.group, self.time, strict=True)]


def _refuse_unusable(result: AttGtResult, wanted: BoolArray) -> None:
    """Refuse cells without a finite ATT and a positive, finite analytic SE (the likelihood)."""
    att, se = result.att, result.se_analytic
    with np.errstate(invalid="ignore"):
        bad = np.flatnonzero(wanted & ~(np.isfinite(att) & np.isfinite(se) & (se > 0)))
    if bad.size == 0:
        return
    c = result.cells
    shown = ", ".join(
        f"ATT({c.group[j]:g},{c.time[j]:g})={att[j]:.4g} (se {se[j]:.3g})" for j in bad[:5]
    )
    reason = (
        f"att_gt found only {result.n_clusters} cluster"
        if result.n_clusters < 2
        else "their estimate is NaN (no usable units) or their SE is zero or NaN (no variance)"
    )
    raise IdentificationError(
        f"bayes_did: {bad.size} of {int(wanted.sum())} cells to model have no usable estimate "
        f"or standard error, which the likelihood needs: {reason}. Cells: {shown}"
        f"{' ...' if bad.size > 5 else ''}. Fix the att_gt fit (positive weights in every "
        "group, at least two clusters, an outcome that varies) before bayes_did."
    )


def _cell_set(result: AttGtResult, include_pre: bool) -> _CellSet:
    c = result.cells
    wanted = ~c.reference & (c.post | bool(include_pre))
    _refuse_unusable(result, wanted)
    keep = wanted
    order = np.flatnonzero(keep).astype(np.int64)
    if not np.any(keep & c.post):
        raise IdentificationError("The result has no estimable post-treatment cell to model.")
    group, time_ = c.group[order], c.time[order]
    post = c.post[order]
    cohorts, cohort_code = np.unique(group, return_inverse=True)
    e = time_ - group
    e_grid = np.unique(e[post])
    e_code = np.where(post, np.searchsorted(e_grid, e), -1).astype(np.int64)
    return _CellSet(
        order=order,
        y=np.asarray(result.att[order], dtype=np.float64),
        se=np.asarray(result.se_analytic[order], dtype=np.float64),
        post=post,
        group=group,
        time=time_,
        cohort_code=cohort_code.astype(np.int64),
        cohorts=cohorts,
        e_code=e_code,
        e_grid=e_grid,
    )


def _reorder(cs: _CellSet, order: Int64Array) -> _CellSet:
    pos = {int(j): i for i, j in enumerate(cs.order)}
    p = np.array([pos[int(j)] for j in order], dtype=np.int64)
    return _CellSet(
        order=cs.order[p],
        y=cs.y[p],
        se=cs.se[p],
        post=cs.post[p],
        group=cs.group[p],
        time=cs.time[p],
        cohort_code=cs.cohort_code[p],
        cohorts=cs.cohorts,
        e_code=cs.e_code[p],
        e_grid=cs.e_grid,
    )


def _data_scale(cs: _CellSet) -> tuple[float, float]:
    """``s``: SD of the raw post cells (at least their median SE); ``m_y``: their mean."""
    y = cs.y[cs.post]
    sd = float(np.std(y, ddof=1)) if y.size > 1 else 0.0
    scale = max(sd, float(np.median(cs.se[cs.post])))
    if not np.isfinite(scale) or scale <= 0:
        scale = max(float(np.max(np.abs(y))), 1.0)
    return scale, float(np.mean(y))


def _factors(
    result: AttGtResult, order: Int64Array, shrinkage: float | None
) -> tuple[CellCovFactors, str]:
    from causalmem._numerics.structured import StructuredIF

    eng = result.engine
    if isinstance(eng, StructuredIF) and eng.never_only:
        fac = structured_factors(
            eng.rows, result.cells, order, shrinkage, ddof=1, variance_df=VARIANCE_DF
        )
        return fac, "structured"
    if order.size > MAX_DENSE_CELLS:
        raise ValueError(
            f"model='cells' with {order.size} cells needs the structured covariance, which "
            "exists for never-treated comparison units without covariates on a balanced panel "
            "(clusters nested in cohorts); this result has "
            f"control_group={result.spec.control_group!r}, xformla={result.spec.xformla!r}, "
            f"allow_unbalanced_panel={result.spec.allow_unbalanced_panel}. The dense fallback is "
            f"limited to {MAX_DENSE_CELLS} cells: model fewer cells (include_pre=False) or "
            "refit with control_group='nevertreated'."
        )
    j_all = result.cells.n_cells
    w = sp.csr_matrix(
        (np.ones(order.size), (order, np.arange(order.size))), shape=(j_all, order.size)
    )
    r = eng.combine(w, np.zeros((result.cells.glist.size + 1, order.size)))
    return dense_factors(r, order, shrinkage), "dense"
