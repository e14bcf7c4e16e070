"""The findings' summary lines: what changed over time, and what the batch lost.

Split from :mod:`nkflow.report.findings`:

- :func:`changes_block`: the paired comparisons (``tables/comparisons.csv``) whose
  Benjamini-Hochberg-adjusted p-value is at most the FDR level, one line each, with the
  glucocorticoid confounding the comparisons table records;
- :func:`failures_note`: how many files failed, and the tubes whose QC removed an unusual
  share of events (:mod:`nkflow.report.qc_outliers`' rule, as the overview and the
  status table use it);
- :func:`population_name` and :func:`population_order`: metaclusters named
  ``"metacluster 4: <label>"`` and listed after the gated populations.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import pandas as pd

from ..tl.compare import FDR_ALPHA
from .qc_outliers import RULE_TEXT, batch_median, median_text, removed_fraction, unusual_removal
from .tables import esc, is_empty

__all__ = [
    "changes_block",
    "failures_note",
    "population_labels",
    "population_name",
    "population_order",
    "unusual_qc",
]

#: failed files named one by one in the findings up to this many
_NAMED_FAILURES = 6
_METACLUSTER = re.compile(r"metacluster:(.+)")


def population_name(population: object, label: object = None) -> str:
    """How the findings name a population: a metacluster says it is one.

    Parameters
    ----------
    population
        The population's id (``"CD56bright"``, ``"metacluster:4"``).
    label
        Its readable label (a metacluster's phenotype string), or None.

    Returns
    -------
    str
        ``"metacluster 4: CD56bright CD49a- ..."`` for a metacluster (``"metacluster 4"``
        without a label); the label, else the id, for a gated population.
    """
    pop = str(population)
    text = "" if label is None or pd.isna(label) else str(label).strip()
    found = _METACLUSTER.fullmatch(pop)
    if found:
        number = f"metacluster {found[1]}"
        return f"{number}: {text}" if text and text != pop else number
    return text or pop


def population_labels(tables: Mapping[str, pd.DataFrame | None]) -> dict[str, str]:
    """Each population's readable label, from the flags (``label``) or the cluster medians.

    Parameters
    ----------
    tables
        The batch tables by name (``flags``, ``cluster_medians``).

    Returns
    -------
    dict
        ``{"metacluster:4": "CD56bright CD49a- ...", ...}`` (empty when no table says).
    """
    labels: dict[str, str] = {}
    medians = tables.get("cluster_medians")
    if not is_empty(medians) and {"metacluster", "label"} <= set(medians.columns):
        for k, text in medians.drop_duplicates("metacluster")[["metacluster", "label"]].values:
            labels[f"metacluster:{k}"] = str(text)
    flags = tables.get("flags")
    if not is_empty(flags) and {"population", "label"} <= set(flags.columns):
        pairs = flags.dropna(subset=["label"]).drop_duplicates("population")
        labels.update(zip(pairs["population"].astype(str), pairs["label"].astype(str), strict=True))
    return labels


def population_order(populations: Sequence[object]) -> list[tuple[int, float, int]]:
    """Sort keys that put gated populations (in their order) before metaclusters (by number).

    Parameters
    ----------
    populations
        Population ids in the table's order.

    Returns
    -------
    list
        One key per population: ``(0, 0, position)`` for a gated population,
        ``(1, number, position)`` for a metacluster.
    """
    keys = []
    for i, pop in enumerate(populations):
        found = _METACLUSTER.fullmatch(str(pop))
        if found is None:
            keys.append((0, 0.0, i))
            continue
        number = pd.to_numeric(pd.Series([found[1]]), errors="coerce").iloc[0]
        keys.append((1, float("inf") if pd.isna(number) else float(number), i))
    return keys


def _signed(value: object) -> str:
    number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    return "–" if pd.isna(number) else f"{number:+.2f}"


def _count(value: object) -> int | None:
    number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    return None if pd.isna(number) else int(number)


def _confounding(row: pd.Series) -> str:
    """What the comparisons table says of the row's glucocorticoid exposure ("" when none)."""
    kind = str(row.get("glucocorticoid_confounded", "") or "").strip().lower()
    n = _count(row.get("n_pairs"))
    counts = []
    for when in ("before", "after"):
        k = _count(row.get(f"n_glucocorticoid_{when}"))
        if k and n:
            counts.append(f"{k} of {n} donor(s) glucocorticoid-exposed {when}")
    exposed = f" ({'; '.join(counts)})" if counts else ""
    if kind == "all":
        return (
            f"glucocorticoid-confounded: every donor's exposure changed between the timepoints"
            f"{exposed}, so this change cannot be told from the steroid's (glucocorticoids "
            "induce AREG in NK; Wei et al., Adv Sci 2025)"
        )
    if kind == "some" and _rests_on_exposed(row):
        return (
            "significant only with the exposed donor(s): without them the change cannot be "
            f"shown ({_without_text(row)}); their glucocorticoid exposure changed between the "
            f"timepoints{exposed}, and glucocorticoids induce AREG in NK (Wei et al., Adv Sci "
            "2025), so the change may be steroid-induced and pro-tumour rather than repair"
        )
    if kind == "some":
        return (
            f"partly glucocorticoid-confounded: some donors' exposure changed between the "
            f"timepoints{exposed}; glucocorticoids induce AREG in NK (Wei et al., Adv Sci 2025), "
            "so part of the change may be steroid-induced and pro-tumour rather than repair"
        )
    if kind == "unknown":
        return (
            "glucocorticoid exposure unknown for some donors: a steroid-induced change "
            "cannot be ruled out"
        )
    return ""


def _unchanged(row: pd.Series) -> tuple[float, float] | None:
    """The row's p and p_min without the exposure-changed donors (None: not recorded)."""
    if "p_value_glucocorticoid_unchanged" not in row.index:
        return None
    got = pd.to_numeric(
        pd.Series(
            [row.get("p_value_glucocorticoid_unchanged"), row.get("p_min_glucocorticoid_unchanged")]
        ),
        errors="coerce",
    )
    return float(got.iloc[0]), float(got.iloc[1])


def _rests_on_exposed(row: pd.Series) -> bool:
    """Whether the row's change cannot be shown without the exposure-changed donors.

    Re-tested without them (``p_value_glucocorticoid_unchanged``), the change must still
    reach the FDR level; no donor left, or a p above the level, means it rests on them.
    """
    got = _unchanged(row)
    if got is None:
        return False
    p, _ = got
    return bool(pd.isna(p) or p > FDR_ALPHA)


def _without_text(row: pd.Series) -> str:
    """``"p 0.062 without them; 5 donors with a change allow p >= 0.062"``-like detail."""
    got = _unchanged(row)
    if got is None or pd.isna(got[0]):
        return "no donor is left"
    p, p_min = got
    text = f"p {p:.3g} without them"
    if not pd.isna(p_min) and p_min > FDR_ALPHA:
        text += f"; the donors left allow p ≥ {p_min:.3g} at best"
    return text


def _change_line(row: pd.Series, labels: Mapping[str, str]) -> str:
    pop = population_name(row.get("population"), labels.get(str(row.get("population"))))
    what = str(row.get("value", "") or "")
    what = "AREG net" if what in ("", "areg_net") else what
    comparison = str(row.get("comparison", "") or "later − first").replace(" - ", " − ")
    n = _count(row.get("n_pairs"))
    up, down = _count(row.get("n_increase")), _count(row.get("n_decrease"))
    donors = ""
    if n is not None and up is not None and down is not None:
        donors = f" (up in {up}, down in {down} of {n} donor{'' if n == 1 else 's'})"
    where = ", ".join(
        str(row.get(c)) for c in ("condition", "tissue") if str(row.get(c, "") or "").strip()
    )
    p_adj = pd.to_numeric(pd.Series([row.get("p_adj")]), errors="coerce").iloc[0]
    text = (
        f"<b>{esc(pop)}</b> — {esc(where)}, {esc(comparison)}: {esc(what)} median change "
        f"{esc(_signed(row.get('median_difference')))} pp{esc(donors)}, p_adj {p_adj:.3g}"
    )
    confounded = _confounding(row)
    return text + (f"; <b>{esc(confounded)}</b>" if confounded else "")


def changes_block(comparisons: pd.DataFrame | None, labels: Mapping[str, str] | None = None) -> str:
    """The comparisons over time that pass the FDR level, one line each.

    Parameters
    ----------
    comparisons
        ``tables/comparisons.csv`` (:func:`nkflow.tl.compare_paired` rows), or None.
    labels
        Readable population labels (:func:`population_labels`).

    Returns
    -------
    str
        HTML: a heading and one line per row with ``p_adj`` ≤ :data:`FDR_ALPHA` (gated
        populations before metaclusters), with the caveats that make it a hypothesis; a
        line saying how many rows were tested and that none passed when none did; ``""``
        when the run made no comparison.
    """
    if is_empty(comparisons) or "p_adj" not in comparisons.columns:
        return ""
    labels = labels or {}
    p_adj = pd.to_numeric(comparisons["p_adj"], errors="coerce")
    tested = int(p_adj.notna().sum())
    untestable = len(comparisons) - tested
    hits = comparisons[p_adj <= FDR_ALPHA]
    pops = hits.get("population", pd.Series("", index=hits.index)).astype(str)
    keys = population_order(list(pops))
    hits = hits.iloc[sorted(range(len(hits)), key=lambda i: keys[i])]
    out = ["<h3>What changed over time</h3>"]
    untested = (
        f" ({untestable} more had too few donors with a non-zero change to reach "
        f"p ≤ {FDR_ALPHA:g} and were not tested)"
        if untestable
        else ""
    )
    source = (
        'Paired comparisons of each donor between timepoints (<a href="#repair">Repair '
        "profile</a>, Comparisons; tables/comparisons.csv), Benjamini-Hochberg-adjusted"
    )
    if not tested:
        out.append(
            f'<p class="lead">{source}: none of its {len(comparisons)} row(s) could be tested: '
            f"each has too few donors with a non-zero change to reach p ≤ {FDR_ALPHA:g} "
            "whatever the data (2 such donors allow p ≥ 0.5). This batch cannot show a change "
            "between timepoints.</p>"
        )
        return "".join(out)
    if hits.empty:
        out.append(
            f'<p class="lead">{source}: {tested} row(s) were tested{untested}, and none had '
            f"p_adj ≤ {FDR_ALPHA:g}. No change between timepoints is supported by this "
            "batch.</p>"
        )
        return "".join(out)
    clusters = pops.str.startswith("metacluster:").any()
    out.append(
        f'<p class="lead">{source}: {len(hits)} of {tested} tested row(s) had p_adj ≤ '
        f"{FDR_ALPHA:g}{untested}. Each is a hypothesis from few donors: the timepoints "
        "differ in treatment and disease course as well as time, and the AREG net is the "
        "response of the cells to stimulation in the tube, not AREG in the patient."
        + (
            " Metacluster rows come from one clustering fit and are adjusted apart from the "
            "gated populations'."
            if clusters
            else ""
        )
        + "</p>"
    )
    items = "".join(f"<li>{_change_line(row, labels)}</li>" for _, row in hits.iterrows())
    out.append(f"<ul>{items}</ul>")
    return "".join(out)


def unusual_qc(qc: pd.DataFrame | None) -> pd.DataFrame:
    """Tubes whose QC removed an unusual share of their events (:mod:`.qc_outliers`' rule).

    Parameters
    ----------
    qc
        ``tables/qc.csv`` (``sample_id``, ``n_in``/``n_out`` or ``removed_fraction``).

    Returns
    -------
    pandas.DataFrame
        The unusual rows, with ``removed_fraction`` and ``batch_median`` (both 0 to 1),
        largest removal first; empty when none.
    """
    if is_empty(qc) or "sample_id" not in qc.columns:
        return pd.DataFrame()
    flagged = unusual_removal(qc)
    frac = removed_fraction(qc)
    out = qc.assign(removed_fraction=frac, batch_median=batch_median(qc))
    return out[flagged.to_numpy()].sort_values("removed_fraction", ascending=False)


def failures_note(status: pd.DataFrame | None, qc: pd.DataFrame | None) -> str:
    """One line on the files that failed, one on the tubes QC cut unusually (``""`` if none).

    Parameters
    ----------
    status
        ``tables/status.csv`` (``sample_id``/``file``, ``status``), or None.
    qc
        ``tables/qc.csv``, or None.

    Returns
    -------
    str
        HTML notes pointing to the Batch overview, where each failure's reason is.
    """
    out = []
    if not is_empty(status) and "status" in status.columns:
        st = status["status"].astype(str)
        failed = status[~st.isin(["ok", "skipped"])]
        if len(failed):
            who = failed.get("sample_id", failed.get("file", pd.Series(dtype=object)))
            names = [str(n) for n in who.fillna("").astype(str) if n]
            shown = ", ".join(names[:_NAMED_FAILURES])
            if len(names) > _NAMED_FAILURES:
                shown += f" and {len(names) - _NAMED_FAILURES} more"
            out.append(
                f'<p class="note"><b>{len(failed)} of {len(status)} input file(s) failed</b>'
                + (f" ({esc(shown)})" if shown else "")
                + " and are not in these findings; the reason for each is in the failure box "
                'of the <a href="#overview">Batch overview</a>.</p>'
            )
    unusual = unusual_qc(qc)
    if len(unusual):
        median = median_text(float(unusual["batch_median"].iloc[0]))
        tubes = "; ".join(
            f"{r.sample_id} {100 * r.removed_fraction:.1f}%"
            + (
                f" ({r.summary.strip().rstrip('.')})"
                if isinstance(getattr(r, "summary", None), str)
                else ""
            )
            for r in unusual.itertuples()
        )
        out.append(
            f'<p class="note"><b>QC removed an unusual share of events in {len(unusual)} '
            f"tube(s)</b> ({esc(RULE_TEXT)}; {median}): {esc(tubes)}. "
            "Check the acquisition of these tubes before "
            'trusting their numbers; the <a href="#overview">Batch overview</a> lists what '
            "QC removed per file.</p>"
        )
    return "".join(out)
