"""``etable``: estimators side by side, rendered from their ``tidy()`` frames only.

Rows are terms (``event_time=3``, ``ATT(1000,2000)``, ``overall``, coefficient names), columns
are models; each cell shows the estimate with its standard error below, and a star when the
interval reported by the model (pointwise or uniform band, as recorded) excludes zero.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

#: Footer names of the estimators an ImputationResult can hold.
_ESTIMATOR_NAMES = {"imputation": "Imputation (BJS)", "two_stage": "Two-stage (Gardner)"}


class _Tidy(Protocol):
    def tidy(self) -> pd.DataFrame: ...


@dataclass(frozen=True)
class Table:
    """A comparison table: long ``data`` (model, term, estimate, ...) plus footer rows."""

    data: pd.DataFrame
    footer: pd.DataFrame
    models: tuple[str, ...]
    digits: int = 4
    caption: str | None = None

    def to_frame(self) -> pd.DataFrame:
        """Wide frame: one row per term, ``estimate`` and ``std_error`` columns per model."""
        wide = self.data.pivot_table(
            index="term", columns="model", values=["estimate", "std_error"], sort=False
        )
        wide = wide.reindex(columns=self.models, level=1)
        return wide.reindex(self.data["term"].drop_duplicates())

    def _display(self) -> pd.DataFrame:
        fmt = f"{{:.{self.digits}f}}"
        d = self.data.assign(
            cell=lambda f: [
                ("" if np.isnan(e) else fmt.format(e) + ("*" if s else ""))
                + ("" if np.isnan(se) else f" ({fmt.format(se)})")
                for e, se, s in zip(f["estimate"], f["std_error"], f["significant"], strict=True)
            ]
        )
        body = d.pivot(index="term", columns="model", values="cell")
        body = body.reindex(index=d["term"].drop_duplicates(), columns=list(self.models))
        body = body.fillna("")
        foot = self.footer.set_index("term").reindex(columns=list(self.models)).fillna("")
        out = pd.concat([body, foot.astype(str)])
        out.index.name = "term"
        return out.reset_index()

    def to_markdown(self) -> str:
        """Markdown table (estimate* (SE)); footer rows give N and inference."""
        text = self._display().to_markdown(index=False)
        note = "\n\n`*` the model's reported interval excludes 0 (see the band row)."
        return (f"{self.caption}\n\n" if self.caption else "") + text + note

    def to_latex(self) -> str:
        """LaTeX (booktabs) table."""
        sty = self._display().style.hide(axis="index")
        return str(sty.to_latex(hrules=True, caption=self.caption, position_float="centering"))

    def to_html(self) -> str:
        """HTML via great-tables (falls back to pandas when great-tables is not installed)."""
        disp = self._display()
        try:
            import great_tables as gt
        except ImportError:
            return str(disp.style.hide(axis="index").to_html())
        tab = gt.GT(disp, rowname_col="term")
        if self.caption:
            tab = tab.tab_header(title=self.caption)
        return str(tab.as_raw_html())


def _term_order(terms: pd.Series) -> np.ndarray:
    """Stable order: first appearance of each term's prefix, then numeric value after '='."""
    parts = terms.str.extract(r"^(?P<prefix>[^=]+)=(?P<num>-?[\d.eE+-]+)$")
    num = pd.to_numeric(parts["num"], errors="coerce")
    prefix = parts["prefix"].fillna(terms)
    first = {p: i for i, p in reversed(list(enumerate(prefix)))}
    key = pd.DataFrame({"p": prefix.map(first), "n": num.fillna(np.inf), "i": range(len(terms))})
    key.loc[terms == "overall", "p"] = len(terms)  # overall rows last
    return key.sort_values(["p", "n", "i"], kind="stable").index.to_numpy()


def etable(
    models: Sequence[Any],
    names: Sequence[str] | None = None,
    *,
    keep: str | None = None,
    digits: int = 4,
    caption: str | None = None,
) -> Table:
    """Compare estimators side by side (CS aggregations, TWFE, event study, Bayesian).

    Parameters
    ----------
    models
        Results with a ``tidy()`` method following the package's contract.
    names
        Column labels (default ``(1)``, ``(2)``, ...).
    keep
        Regular expression: keep only matching terms.
    digits
        Decimals shown.
    caption
        Table caption.

    Returns
    -------
    Table
        With ``to_frame()``, ``to_markdown()``, ``to_latex()`` and ``to_html()``.

    Examples
    --------
    >>> import causalmem as cm
    >>> df = cm.simulate_panel(seed=0).frame
    >>> cs = cm.aggte(cm.att_gt(df, "y", "step", "unit", "cohort", bstrap=False), "dynamic",
    ...               event_time="periods")
    >>> tw = cm.event_study(df, "y", "step", "unit", "cohort", estimator="twfe")
    >>> "event_time=0" in etable([cs, tw], ["CS", "TWFE"]).to_frame().index
    True
    """
    if not models:
        raise ValueError("etable() needs at least one model.")
    labels = tuple(names) if names is not None else tuple(f"({i + 1})" for i in range(len(models)))
    if len(labels) != len(models):
        raise ValueError(f"{len(models)} models but {len(labels)} names.")
    if len(set(labels)) != len(labels):
        raise ValueError(f"Model names must be unique, got {labels}.")
    rows, foot = [], []
    for label, m in zip(labels, models, strict=True):
        if not hasattr(m, "tidy"):
            raise TypeError(f"{label}: {type(m).__name__} has no tidy(); pass causalmem results.")
        t = m.tidy()
        missing = {"term", "estimate", "std_error", "conf_low", "conf_high"} - set(t.columns)
        if missing:
            raise ValueError(f"{label}: tidy() lacks columns {sorted(missing)}.")
        if keep is not None:
            t = t[t["term"].astype(str).str.contains(re.compile(keep))]
        sig = (t["conf_low"] > 0) | (t["conf_high"] < 0)
        rows.append(
            pd.DataFrame(
                {
                    "model": label,
                    "term": t["term"].astype(str),
                    "estimate": t["estimate"],
                    "std_error": t["std_error"],
                    "significant": sig.to_numpy(),
                }
            )
        )
        g = m.glance() if hasattr(m, "glance") else pd.DataFrame([{}])
        sizes = [g.iloc[0][c] for c in ("n_units", "n_obs") if c in g.columns]
        n = next((v for v in sizes if pd.notna(v)), "")
        kind = type(m).__name__.replace("Result", "")
        if "estimator" in g.columns:  # e.g. EventStudy:twfe
            est = str(g.iloc[0]["estimator"])
            # ImputationResult: its glance names the estimator ("imputation", "two_stage")
            kind = _ESTIMATOR_NAMES.get(est, est) if kind == "Imputation" else f"{kind}:{est}"
        se_m = t["se_method"].iloc[0] if "se_method" in t.columns and len(t) else ""
        band = t["band"].iloc[0] if "band" in t.columns and len(t) else ""
        foot.append(
            {
                "model": label,
                "N": n,
                "SE": se_m,
                "band": band,
                "estimator": kind,
            }
        )
    data = pd.concat(rows, ignore_index=True)
    data = data.iloc[_term_order(data["term"])].reset_index(drop=True)
    f = pd.DataFrame(foot).set_index("model").T
    f.index.name = "term"
    return Table(data=data, footer=f.reset_index(), models=labels, digits=digits, caption=caption)
