"""Comparisons of repair scores across samples: paired pre/post and between groups.

Cohorts in this field are small (often 3-12 donors), so the tests are exact where that is
feasible: sign-flip permutation of paired differences (exact enumeration up to 16 pairs),
label permutation between groups (exact up to 20 000 arrangements), with Hodges-Lehmann
effects and their distribution-free intervals where the sample size allows a 95% interval.
p-values are Benjamini-Hochberg adjusted within the gated populations' rows and, apart,
within the metaclusters' rows of each output table, over the testable rows only.

An exact sign-flip test over ``n`` pairs cannot give a two-sided p below ``2 / 2**n`` (every
difference in one direction): 2 pairs never go below 0.5, 5 pairs never below 0.0625, so
``p_min`` says beside each row what its ``n_pairs`` allows. A row whose ``p_min`` is above
the FDR level (:data:`FDR_ALPHA`, 0.05) cannot be significant whatever its data, and counted
in the Benjamini-Hochberg step it would only raise every other row's ``p_adj`` (one tissue
with a single donor took blood's 0.5 to 1). For discrete tests leaving such rows out is valid
(Tarone, Biometrics 1990;46:515; Gilbert, J R Stat Soc C 2005;54:143): their ``p_adj`` is NaN.

Tests are per stimulation condition and population by default (``by=None``): an IL-15 and a
PMA/iono response are different read-outs and are never pooled. Add context columns to ``by``
to stratify, e.g. ``by=("condition", "tissue_kind", "population")`` so that tumour and
normal tissue (where AREG+ NK may mean different things) are tested apart.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from ..exceptions import ConfigError
from ._compare_exposure import changed_units as _changed_units
from ._compare_exposure import exposed_counts as _exposed_counts
from ._compare_exposure import with_exposures as _with_exposures
from ._compare_groups import (
    hodges_lehmann_shift,
    perm_groups_p,
    permutation_min_p,
    refuse_shared_donors,
)
from ._compare_pairs import pairs_per_group as _pairs_per_group
from ._compare_pairs import rows_without_pairs as _rows_without_pairs
from ._compare_pairs import too_few_events as _too_few_events
from ._compare_pairs import wide as _wide

__all__ = [
    "FDR_ALPHA",
    "PAIRED_COLUMNS",
    "adjust_per_family",
    "benjamini_hochberg",
    "compare_groups",
    "compare_paired",
    "paired_columns",
    "permutation_min_p",
    "signflip_min_p",
]

logger = logging.getLogger(__name__)

_EXACT_PAIRS = 16
_DEFAULT_BY = ("condition", "population")
#: FDR level of ``p_adj``: a row whose smallest attainable p (``p_min``) is above it is not
#: adjusted (Tarone 1990) and gets ``p_adj`` NaN
FDR_ALPHA = 0.05
#: the columns :func:`compare_paired` adds after its ``by`` columns (an empty result too)
PAIRED_COLUMNS = (
    "n_pairs", "n_units", "n_pairs_too_few_events", "mean_before", "mean_after", "mean_difference",
    "median_difference", "hl_estimate", "ci_low", "ci_high", "n_increase", "n_decrease",
    "p_value", "p_min", "p_sign", "test", "p_adj", "value", "comparison",
)  # fmt: skip


def _strata(scores: pd.DataFrame, by: Sequence[str] | None) -> list[str]:
    """``by`` as given, or condition and population (those present) when ``None``."""
    if by is not None:
        return list(by)
    return [c for c in _DEFAULT_BY if c in scores.columns] or ["population"]


def benjamini_hochberg(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false discovery rate); NaN stays NaN.

    Parameters
    ----------
    pvalues
        Raw p-values.

    Returns
    -------
    numpy.ndarray
        Adjusted p-values, same order, capped at 1.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if m == 0:
        return out
    pv = p[ok]
    order = np.argsort(pv)
    ranked = pv[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    res = np.empty(m)
    res[order] = np.minimum(adjusted, 1.0)
    out[ok] = res
    return out


# ------------------------------------------------------------------- paired tests
def _signflip_p(d: np.ndarray, rng: np.random.Generator, n_resamples: int) -> tuple[float, str]:
    """Two-sided sign-flip permutation p-value of the mean difference."""
    n = d.size
    observed = abs(d.sum())
    if n <= _EXACT_PAIRS:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
        null = np.abs(signs @ d)
        return float(np.mean(null >= observed - 1e-12)), "sign-flip permutation (exact)"
    signs = rng.choice((1.0, -1.0), size=(n_resamples, n))
    null = np.abs(signs @ d)
    p = (1.0 + np.sum(null >= observed - 1e-12)) / (n_resamples + 1.0)
    return float(p), f"sign-flip permutation ({n_resamples} resamples)"


def signflip_min_p(n_pairs: int, n_resamples: int = 20_000) -> float:
    """Smallest two-sided p-value the sign-flip test can give with ``n_pairs`` pairs.

    Parameters
    ----------
    n_pairs
        Number of independent pairs (donors).
    n_resamples
        Random sign flips used above 16 pairs.

    Returns
    -------
    float
        ``2 / 2**n_pairs`` (capped at 1) when the test is exact, ``1 / (n_resamples + 1)``
        when it is resampled; NaN for no pairs.
    """
    if n_pairs < 1:
        return float("nan")
    if n_pairs <= _EXACT_PAIRS:
        return min(1.0, 2.0 / 2.0**n_pairs)
    return 1.0 / (n_resamples + 1.0)


def _signed_rank_counts(n: int) -> np.ndarray:
    """Number of sign patterns giving each signed-rank sum T+ = 0..n(n+1)/2."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for k in range(1, n + 1):
        counts[k:] = counts[k:] + counts[:-k].copy()
    return counts


def _hodges_lehmann_paired(d: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """Pseudo-median of the differences with the exact Walsh-average interval."""
    i, j = np.triu_indices(d.size)
    walsh = np.sort((d[i] + d[j]) / 2.0)
    estimate = float(np.median(walsh))
    n = d.size
    if n > 60:
        m = n * (n + 1) / 4.0
        sd = np.sqrt(n * (n + 1) * (2 * n + 1) / 24.0)
        k = int(np.floor(m - sps.norm.ppf(0.5 + confidence / 2.0) * sd))
    else:
        cdf = np.cumsum(_signed_rank_counts(n)) / 2.0**n
        k = int(np.searchsorted(cdf, (1.0 - confidence) / 2.0, side="right"))
        # k = largest c with P(T+ <= c - 1) <= alpha/2 -> interval [W_(k+1), W_(M-k)] 1-based
    if k < 1:
        return estimate, np.nan, np.nan
    return estimate, float(walsh[k - 1]), float(walsh[walsh.size - k])


def compare_paired(
    scores: pd.DataFrame,
    *,
    before: str,
    after: str,
    value: str = "areg_net",
    timepoint_key: str = "timepoint",
    pair_on: Sequence[str] = ("donor", "tissue"),
    by: Sequence[str] | None = None,
    exposures: Sequence[str] = (),
    min_events: int | None = None,
    events: Sequence[str] = ("n_events_stim", "n_events_unstim"),
    confidence: float = 0.95,
    n_resamples: int = 20_000,
    random_state: int | np.random.Generator | None = 0,
    fdr_alpha: float = FDR_ALPHA,
) -> pd.DataFrame:
    """Paired before/after comparison of a score per donor and tissue.

    Parameters
    ----------
    scores
        ``ScoreResult.scores`` (or any table with ``value``, ``timepoint_key``, ``pair_on``
        and ``by`` columns). Replicate tubes of one donor, tissue and timepoint are averaged.
    before, after
        The two values of ``timepoint_key`` to compare; the difference is ``after - before``.
    value
        Column compared (AREG_net by default, percentage points).
    timepoint_key
        Column holding the timepoint.
    pair_on
        Columns identifying one unit measured twice; add ``"batch"`` to pair only within
        a batch (BIOLOGY.md asks for matched tissue and batch where the design allows).
    by
        One test per combination of these columns; ``None``: per stimulation condition and
        population (``condition`` when the table has it). Add context columns
        (``tissue_kind``) to stratify; a column that changes between the two timepoints
        (``glucocorticoid`` when steroids came with the treatment) would break the pairs.
    exposures
        Context columns counted, not stratified on (``("glucocorticoid",)``). For each,
        a donor is exposed at a timepoint when any of its tubes then says ``yes``,
        unexposed when all say ``no``, and of unknown exposure otherwise (``unknown``, not
        recorded: never counted as unexposed). ``n_<column>_before``/``_after`` count the
        row's exposed pairs (donors), ``n_<column>_unknown_before``/``_after`` those of
        unknown exposure, and ``<column>_confounded`` says whether the ``after - before``
        change is confounded with the exposure: ``all`` (every donor's exposure is known at
        both timepoints and differs between them: the change cannot be told from the
        steroid's effect), ``some`` (at least one donor's, not all), ``none`` (every donor's
        is known and the same at both) or ``unknown`` (none known to differ, but some
        donor's exposure is unknown at a timepoint). ``p_value_<column>_unchanged`` and
        ``p_min_<column>_unchanged`` repeat the test without the donors whose exposure is
        known to have changed (NaN when none is left): a change significant only with them
        cannot be told from the exposure's effect.
    min_events
        Tubes whose ``events`` columns hold fewer events than this (the scoring's
        ``min_events``: ``EVENTS_BELOW_MIN`` in ``flags.csv``) are left out, as if missing:
        a net from a handful of cells moves by tens of percentage points with one cell.
        ``n_pairs_too_few_events`` counts the pairs (donors) lost that way; ``None``: no
        tube is left out.
    events
        Event-count columns ``min_events`` applies to (a tube needs it in each).
    confidence
        Coverage of the Hodges-Lehmann interval.
    n_resamples
        Random sign flips when there are more than 16 pairs (exact enumeration below).
    random_state
        Seed or generator for those resamples.
    fdr_alpha
        FDR level: rows whose ``p_min`` is above it are left out of the Benjamini-Hochberg
        step (they cannot reach it; Tarone 1990) and get ``p_adj`` NaN.

    Returns
    -------
    pandas.DataFrame
        One row per ``by`` group: ``n_pairs`` (donors: a donor measured in several tissues
        of one group is one pair, its tissues' values averaged, since they are not
        independent), ``n_units`` (the ``pair_on`` units before that), ``mean_before``,
        ``mean_after``,
        ``mean_difference``, ``median_difference``, ``hl_estimate``, ``ci_low``,
        ``ci_high`` (NaN when fewer pairs than the interval needs: 6 at 95%), ``n_increase``,
        ``n_decrease``, ``p_value`` (sign-flip permutation), ``p_min`` (the smallest
        ``p_value`` the row's donors with a non-zero difference allow: ``2 / 2**k`` for
        ``k`` of them when exact; a zero difference has no sign to flip, and 1 when every
        difference is zero), ``p_sign``
        (exact sign test), ``p_adj`` (Benjamini-Hochberg over the gated populations' testable
        rows and, apart, over the metaclusters' testable rows; testable: ``p_min`` at most
        ``fdr_alpha``; NaN for the others), ``test``, ``n_pairs_too_few_events`` after
        ``n_units``, the ``exposures`` counts after it and their
        ``p_value_<column>_unchanged``/``p_min_<column>_unchanged`` after ``p_adj``.

    Raises
    ------
    ConfigError
        A column named above is missing from ``scores``, ``before == after``, or
        ``fdr_alpha`` is not between 0 and 1.
    """
    _check_alpha(fdr_alpha)
    by = _strata(scores, by)
    exposures = list(exposures)
    for col in [value, timepoint_key, *pair_on, *by, *exposures]:
        if col not in scores.columns:
            raise ConfigError(
                f"scores table has no column {col!r}; have {', '.join(map(str, scores.columns))}"
            )
    if before == after:
        raise ConfigError(f"before and after are both {before!r}; give two timepoints")
    rng = np.random.default_rng(random_state)
    keys = list(dict.fromkeys([*by, *pair_on]))  # a column may be in both
    sub = scores[scores[timepoint_key].isin([before, after])]
    lost = pd.Series(dtype=float)
    if min_events is not None:
        few = _too_few_events(sub, events, min_events)
        every = _pairs_per_group(_wide(sub, keys, timepoint_key, before, after, value), by)
        sub = sub[~few]
        lost = every - _pairs_per_group(
            _wide(sub, keys, timepoint_key, before, after, value), by
        ).reindex(every.index, fill_value=0)
    wide = _wide(sub, keys, timepoint_key, before, after, value)
    wide = _with_exposures(wide, sub, keys, timepoint_key, (before, after), exposures)
    rows = []
    for group, part in wide.groupby(list(by), dropna=False, sort=True):
        group = group if isinstance(group, tuple) else (group,)
        n_units = len(part)
        exposed = _exposed_counts(part, exposures)
        changed = {col: _changed_units(part, col) for col in exposures}
        part = _one_unit_per_donor(part, pair_on, before, after)
        d = (part[after] - part[before]).to_numpy(float)
        row = dict(zip(by, group, strict=True))
        row.update(
            n_pairs=int(d.size),
            n_units=n_units,
            n_pairs_too_few_events=int(lost.get(group if len(group) > 1 else group[0], 0)),
            **exposed,
            mean_before=part[before].mean(),
            mean_after=part[after].mean(),
        )
        if d.size == 0:
            continue
        est, lo, hi = _hodges_lehmann_paired(d, confidence)
        p, test = _signflip_p(d, rng, n_resamples)
        nonzero = d[d != 0]
        p_sign = (
            float(sps.binomtest(int((nonzero > 0).sum()), nonzero.size).pvalue)
            if nonzero.size
            else 1.0
        )
        row.update(
            mean_difference=float(d.mean()),
            median_difference=float(np.median(d)),
            hl_estimate=est,
            ci_low=lo,
            ci_high=hi,
            n_increase=int((d > 0).sum()),
            n_decrease=int((d < 0).sum()),
            p_value=p,
            p_min=_nonzero_min_p(d, n_resamples),
            p_sign=p_sign,
            test=test,
        )
        for col, units in changed.items():
            who = part["donor"] if "donor" in part else pd.Series(range(len(part)))
            kept = d[~who.isin(units).to_numpy()]
            row[f"p_value_{col}_unchanged"] = (
                _signflip_p(kept, rng, n_resamples)[0] if kept.size else np.nan
            )
            row[f"p_min_{col}_unchanged"] = _nonzero_min_p(kept, n_resamples)
        rows.append(row)
    rows += _rows_without_pairs(lost, by, {tuple(row[c] for c in by) for row in rows})
    out = pd.DataFrame(rows)
    if out.empty:
        logger.warning("no %s/%s pairs found on %s", before, after, ", ".join(pair_on))
        return pd.DataFrame(columns=paired_columns(by, exposures))
    out = out.sort_values(list(by), kind="mergesort", ignore_index=True)  # groupby's order
    out = out.reindex(columns=list(dict.fromkeys([*out.columns, *paired_columns(by, exposures)])))
    counts = [c for c in out.columns if c.startswith("n_")]  # 0 in the rows without pairs
    out[counts] = out[counts].fillna(0).astype(int)
    out["p_adj"] = adjust_per_family(out, fdr_alpha)
    out["value"] = value
    out["comparison"] = f"{after} - {before}"
    return out[paired_columns(by, exposures)]


def _nonzero_min_p(d: np.ndarray, n_resamples: int) -> float:
    """The smallest sign-flip p the non-zero differences of ``d`` allow (NaN: no pairs).

    A zero difference has no sign to flip: only the others move the p-value (all zero:
    p = 1 whatever the data, so the row is not testable).
    """
    if d.size == 0:
        return float("nan")
    k = int(np.count_nonzero(d))
    return signflip_min_p(k, n_resamples) if k else 1.0


def adjust_per_family(out: pd.DataFrame, alpha: float = FDR_ALPHA) -> np.ndarray:
    """Benjamini-Hochberg within the gated populations and, apart, within the metaclusters.

    Run over a whole output table: ``comparisons.csv`` joins one :func:`compare_paired` per
    later timepoint, and its ``p_adj`` is over all of them (each call's own ``p_adj`` is
    over its rows only).

    The metaclusters come from a random fit: adjusted together with them, a gated
    population's ``p_adj`` moved with the clustering's random state and the sheet's order.
    Only rows whose ``p_min`` is at most ``alpha`` are adjusted (Tarone 1990): a row that
    cannot reach the level would raise the others' ``p_adj`` for nothing; it gets NaN.
    """
    adjusted = np.full(len(out), np.nan)
    if "population" in out.columns:
        clustered = out["population"].astype(str).str.startswith("metacluster:").to_numpy()
    else:
        clustered = np.zeros(len(out), dtype=bool)
    p = out["p_value"].to_numpy(dtype=float)
    testable = np.ones(len(out), dtype=bool)
    if "p_min" in out.columns:
        testable = out["p_min"].to_numpy(dtype=float) <= alpha
    for family in (~clustered & testable, clustered & testable):
        if family.any():
            adjusted[family] = benjamini_hochberg(p[family])
    return adjusted


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"fdr_alpha {alpha!r}; valid: 0 < fdr_alpha < 1")


def paired_columns(by: Sequence[str], exposures: Sequence[str] = ()) -> list[str]:
    """Column order of :func:`compare_paired`'s result for these ``by`` and ``exposures``.

    Parameters
    ----------
    by
        The stratifying columns (first).
    exposures
        The counted context columns; their counts follow ``n_units``.

    Returns
    -------
    list of str
        ``by``, then :data:`PAIRED_COLUMNS` with ``n_<col>_before``, ``n_<col>_after``,
        ``n_<col>_unknown_before``, ``n_<col>_unknown_after`` and ``<col>_confounded``
        after ``n_pairs_too_few_events``, and ``p_value_<col>_unchanged`` and
        ``p_min_<col>_unchanged`` after ``p_adj``.
    """
    counts = [
        name
        for c in exposures
        for name in (f"n_{c}_before", f"n_{c}_after", f"n_{c}_unknown_before",
                     f"n_{c}_unknown_after", f"{c}_confounded")
    ]  # fmt: skip
    unchanged = [
        name for c in exposures for name in (f"p_value_{c}_unchanged", f"p_min_{c}_unchanged")
    ]
    cols = list(PAIRED_COLUMNS)
    at = cols.index("n_pairs_too_few_events") + 1
    last = cols.index("p_adj") + 1
    return [*by, *cols[:at], *counts, *cols[at:last], *unchanged, *cols[last:]]


def _one_unit_per_donor(
    part: pd.DataFrame, pair_on: Sequence[str], before: str, after: str
) -> pd.DataFrame:
    """Average the pairs of a donor measured in several tissues into one pair.

    Two tissues of one donor are not two independent pairs: counted as such they inflate
    ``n`` and make the p-value look stronger than the data allow. The test's unit is the
    donor, so a donor's tissues (or other ``pair_on`` units) are averaged first.
    """
    others = [c for c in pair_on if c != "donor"]
    if "donor" not in pair_on or not others or not part["donor"].duplicated().any():
        return part
    return part.groupby("donor", dropna=False, sort=False)[[before, after]].mean().reset_index()


# -------------------------------------------------------------------- group tests
def compare_groups(
    scores: pd.DataFrame,
    group_key: str,
    *,
    groups: Sequence[str] | None = None,
    value: str = "areg_net",
    unit_on: Sequence[str] = ("donor",),
    by: Sequence[str] | None = None,
    confidence: float = 0.95,
    n_resamples: int = 20_000,
    random_state: int | np.random.Generator | None = 0,
    fdr_alpha: float = FDR_ALPHA,
) -> pd.DataFrame:
    """Compare a score between groups of donors (e.g. patients vs controls).

    The groups hold different donors: a donor in both (blood vs liver of the same donors)
    makes the comparison paired, which :func:`compare_paired` tests
    (``timepoint_key="tissue", pair_on=("donor",)``).

    Parameters
    ----------
    scores
        ``ScoreResult.scores`` with a ``group_key`` column added (e.g. mapped from donor).
    group_key
        Column holding the group label.
    groups
        Groups to compare, all pairs of them; ``None`` uses every label present (sorted).
    value
        Column compared (AREG_net by default).
    unit_on
        Columns identifying one unit; its tubes are averaged first. With ``donor`` among
        them, a donor's units (its tissues, say) are then averaged into one, so a donor
        never counts twice in a group: the test's unit is the donor.
    by
        One test per combination of these columns; ``None``: per stimulation condition and
        population (``condition`` when the table has it). Add context columns
        (``tissue``, ``tissue_kind``, ``glucocorticoid``) to stratify.
    confidence
        Coverage of the Hodges-Lehmann shift interval (exact Mann-Whitney distribution).
    n_resamples
        Random permutations when exact enumeration exceeds 20 000 arrangements.
    random_state
        Seed or generator for those permutations.
    fdr_alpha
        FDR level: rows whose ``p_min`` is above it are left out of the Benjamini-Hochberg
        step (they cannot reach it; Tarone 1990) and get ``p_adj`` NaN.

    Returns
    -------
    pandas.DataFrame
        One row per ``by`` group and pair of groups: ``group_a``, ``group_b``, ``n_a``,
        ``n_b``, ``mean_a``, ``mean_b``, ``mean_difference`` (a - b), ``hl_shift``,
        ``ci_low``, ``ci_high``, ``p_value`` (label permutation of the mean difference),
        ``p_min`` (the smallest ``p_value`` these group sizes allow:
        :func:`permutation_min_p`), ``p_mannwhitney``, ``p_adj`` (Benjamini-Hochberg over
        the gated populations' testable rows and, apart, over the metaclusters' testable
        rows; testable: ``p_min`` at most ``fdr_alpha``; NaN for the others), ``test``.

    Raises
    ------
    ConfigError
        A column named above is missing from ``scores``, ``group_key`` is also a unit or
        stratum column, a donor is in two of the compared groups (paired data), fewer than
        two groups, or ``fdr_alpha`` is not between 0 and 1.
    """
    _check_alpha(fdr_alpha)
    by = _strata(scores, by)
    for col in [value, group_key, *unit_on, *by]:
        if col not in scores.columns:
            raise ConfigError(
                f"scores table has no column {col!r}; have {', '.join(map(str, scores.columns))}"
            )
    if group_key in (*unit_on, *by):
        raise ConfigError(
            f"compare_groups: {group_key!r} is both the group column and a unit_on/by column; "
            "a group cannot be compared with itself"
        )
    rng = np.random.default_rng(random_state)
    units = (
        scores.groupby([*by, group_key, *unit_on], dropna=False, observed=True)[value]
        .mean()
        .dropna()
        .reset_index()
    )
    if "donor" in unit_on:  # a donor's tissues (other unit columns) are one unit
        units = (
            units.groupby([*by, group_key, "donor"], dropna=False, observed=True)[value]
            .mean()
            .reset_index()
        )
    labels = sorted(units[group_key].astype(str).unique()) if groups is None else list(groups)
    if len(labels) < 2:
        given = sorted(scores[group_key].dropna().astype(str).unique())
        why = f"need two groups in {group_key!r}; found {labels}"
        if len(given) > len(labels):
            why += f" with values in {value!r} (the table has {given}; the others' are all NaN)"
        raise ConfigError(why)
    if "donor" in unit_on:
        refuse_shared_donors(units, group_key, labels)
    rows = []
    for group, part in units.groupby(list(by), dropna=False, sort=True):
        group = group if isinstance(group, tuple) else (group,)
        for a, b in itertools.combinations(labels, 2):
            x = part.loc[part[group_key].astype(str) == str(a), value].to_numpy(float)
            y = part.loc[part[group_key].astype(str) == str(b), value].to_numpy(float)
            row = dict(zip(by, group, strict=True))
            row.update(group_a=a, group_b=b, n_a=int(x.size), n_b=int(y.size))
            if x.size == 0 or y.size == 0:
                continue
            est, lo, hi = hodges_lehmann_shift(x, y, confidence)
            p, test = perm_groups_p(x, y, rng, n_resamples)
            alike = np.ptp(np.concatenate([x, y])) == 0  # every value equal: p = 1 always
            row.update(
                mean_a=float(x.mean()),
                mean_b=float(y.mean()),
                mean_difference=float(x.mean() - y.mean()),
                hl_shift=est,
                ci_low=lo,
                ci_high=hi,
                p_value=p,
                p_min=1.0 if alike else permutation_min_p(int(x.size), int(y.size), n_resamples),
                p_mannwhitney=float(sps.mannwhitneyu(x, y, alternative="two-sided").pvalue),
                test=test,
            )
            rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["p_adj"] = adjust_per_family(out, fdr_alpha)
    out["value"] = value
    return out
