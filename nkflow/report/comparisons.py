"""The report's comparisons block: paired tests of the flaggable populations over time.

Split from :mod:`nkflow.report.repair`. The rows are :func:`nkflow.tl.compare_paired`'s
(``tables/comparisons.csv``); this module says what each column means, what the row sizes
allow, and where a change over time is confounded with glucocorticoid exposure.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..tl.compare import FDR_ALPHA
from .tables import esc, html_table, is_empty

__all__ = ["comparisons_block"]

_COMPARISON_INTRO = (
    "First timepoint against each later one, per condition and tissue, for the populations "
    "the scoring may flag (its <code>[flag] populations</code>, metaclusters included when "
    "listed); the value is the AREG net in percentage points (pp), after − before. "
    "<code>n_pairs</code> counts donors, the test's independent units; a donor measured "
    "twice in one row (several tissues) is one pair, its values averaged "
    "(<code>n_units</code>: the donor × tissue pairs before that). A tube with fewer "
    "events in the population than the scoring's minimum (stim or unstim tube: "
    "<code>EVENTS_BELOW_MIN</code> in tables/flags.csv) is left out as if missing, its "
    "net resting on a handful of cells; <code>n_pairs_too_few_events</code> counts the "
    "pairs lost that way, and a row whose every pair was lost is not in the table. "
    "<code>hl_estimate</code>: Hodges-Lehmann estimate of the shift (median of the "
    "pairwise averages of the differences), with its distribution-free 95% interval "
    "(<code>ci_low</code>–<code>ci_high</code>, blank below 6 pairs). "
    "<code>p_value</code>: two-sided sign-flip permutation test of the mean difference "
    "(exact up to 16 pairs); <code>p_min</code>: the smallest p-value the row's donors "
    "with a non-zero difference allow (2/2^k for k such donors: 0.5 with 2, so such a row "
    "can never reach significance whatever the data; a zero difference has no sign to "
    "flip, and a row whose differences are all zero has 1); <code>p_sign</code>: exact "
    "sign test on how many donors went up vs down; <code>p_adj</code>: Benjamini-Hochberg "
    "(false discovery rate) "
    f"adjustment over the rows that can reach p ≤ {FDR_ALPHA:g} (<code>p_min</code> ≤ "
    f"{FDR_ALPHA:g}; the others cannot be significant, are left out as Tarone 1990 advises "
    "for discrete tests, and have no <code>p_adj</code>), the gated populations' rows and "
    "the metaclusters' (from a random fit) adjusted apart. "
    "<code>n_glucocorticoid_before</code>/<code>_after</code>: donors of the row whose tubes "
    "were glucocorticoid-exposed at that timepoint (<code>n_glucocorticoid_unknown_*</code>: "
    "donors whose exposure is unknown or not recorded, never counted as unexposed); "
    "glucocorticoids induce AREG in NK cells, pro-tumour in tumour NK (Wei et al., Adv Sci "
    "2025), so a row "
    "whose donors' exposure changed between the timepoints mixes the treatment with steroid "
    "exposure. <code>glucocorticoid_confounded</code>: <code>all</code> when every donor's "
    "exposure changed (the change over time cannot be told from the steroid's), "
    "<code>some</code> when some did, <code>none</code> when none did, <code>unknown</code> "
    "when none is known to have changed but some exposure is unknown. "
    "<code>p_value_glucocorticoid_unchanged</code>/<code>p_min_glucocorticoid_unchanged"
    "</code>: the same test without the donors whose exposure changed (blank when none "
    "is left): a row significant only with them cannot show a change of its own."
)


def _exposure_text(row: pd.Series) -> str:
    """``"after: 1 of 2 donors (mixed)"`` from a row's glucocorticoid counts."""
    n = row.get("n_pairs")
    parts = []
    for when in ("before", "after"):
        k = row.get(f"n_glucocorticoid_{when}")
        if k is None or pd.isna(k) or n is None or pd.isna(n) or int(k) == 0:
            continue
        mixed = " (mixed)" if int(k) < int(n) else ""
        donors = "donor" if int(n) == 1 else "donors"
        parts.append(f"{when}: {int(k)} of {int(n)} {donors}{mixed}")
    return "; ".join(parts) or "none"


def _cell(col: str, value: Any, row: pd.Series) -> str:
    return ("yes" if value else "no") if isinstance(value, bool | np.bool_) else ""


def comparisons_block(comparisons: pd.DataFrame | None) -> str:
    """The comparisons table with what each column means and what the row sizes allow.

    Parameters
    ----------
    comparisons
        ``tables/comparisons.csv`` (:func:`nkflow.tl.compare_paired` rows); ``None`` or
        empty gives ``""``.

    Returns
    -------
    str
        HTML: heading, the column explanations, counts of rows that cannot reach
        p ≤ 0.05, of rows mixing glucocorticoid-exposed and unexposed donors and of rows
        whose change is wholly confounded with steroid exposure, and the table.
    """
    if is_empty(comparisons):
        return ""
    table = comparisons.copy()
    notes = []
    if "p_min" in table.columns:
        blocked = int((pd.to_numeric(table["p_min"], errors="coerce") > FDR_ALPHA).sum())
        if blocked:
            notes.append(
                f"{blocked} of {len(table)} row(s) have too few donors with a non-zero "
                f"change to reach "
                f"p ≤ {FDR_ALPHA:g} with any data (p_min > {FDR_ALPHA:g}): read them as "
                "description, not as tests."
            )
    if "n_pairs_too_few_events" in table.columns:
        lost = pd.to_numeric(table["n_pairs_too_few_events"], errors="coerce").fillna(0)
        if lost.sum():
            notes.append(
                f"{int(lost.sum())} pair(s) in {int((lost > 0).sum())} row(s) were left out "
                "for too few events (n_pairs_too_few_events)."
            )
        empty = int((pd.to_numeric(table.get("n_pairs"), errors="coerce") == 0).sum())
        if empty:
            notes.append(
                f"{empty} row(s) have no pair left (n_pairs 0): every donor's tubes had too "
                "few events, so the row has no test."
            )
    if "glucocorticoid_confounded" in table.columns:
        confounded = int((table["glucocorticoid_confounded"].astype(str) == "all").sum())
        if confounded:
            notes.append(
                f"{confounded} row(s): every donor's glucocorticoid exposure changed between "
                "the timepoints, so their change over time cannot be told from the steroid's."
            )
    if {"n_glucocorticoid_after", "n_glucocorticoid_before"} <= set(table.columns):
        table["glucocorticoid_exposed"] = table.apply(_exposure_text, axis=1)
        mixed = int(table["glucocorticoid_exposed"].str.contains("mixed").sum())
        if mixed:
            notes.append(
                f"{mixed} row(s) mix glucocorticoid-exposed and unexposed donors "
                "(column glucocorticoid-exposed)."
            )
        cols = list(table.columns)
        cols.remove("glucocorticoid_exposed")
        at = cols.index("population") + 1 if "population" in cols else len(cols)
        table = table[[*cols[:at], "glucocorticoid_exposed", *cols[at:]]]
    lead = _COMPARISON_INTRO + ("" if not notes else " " + " ".join(esc(n) for n in notes))
    return f'<h3>Comparisons</h3><p class="lead">{lead}</p>' + html_table(
        table,
        labels={"glucocorticoid_exposed": "glucocorticoid-exposed"},
        cell_class=_cell,
        source="tables/comparisons.csv",
    )
