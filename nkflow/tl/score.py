"""Stage 2 of repair scoring: the repair profile and its flags, from per-sample counts.

Per population and stimulated/unstimulated pair (same donor, tissue, timepoint and batch),
per stimulation condition (the sheet's ``stimulation`` of each stimulated tube: IL-15, IL-2,
PMA/iono, dexamethasone ...), BIOLOGY.md 6(c) asks for separate, auditable parts, never one
opaque number:

1. trophic response: AREG_net = %AREG+ (stim) - %AREG+ (unstim), Newcombe interval;
2. polarisation: RI = net AREG+IFN-g- / (net AREG+IFN-g- + net AREG-IFN-g+), next to IFN-g_net;
3. clearance axis, kept apart: %NKG2D+ and CD107a_net;
4. residency context: fraction in the trNK gate, from the unstimulated tube (not in the score).

A population is flagged AREG-responsive only when every rule passes, including the batch's
positive control and the condition may flag (config ``[flag] conditions``); each flag row lists
the numbers, the rule that raised it or the rules that failed. Every row carries its
``evidence`` (human: reported, Wang 2023; mouse: exploratory) and, in tumour / peri-tumour
tissue, after glucocorticoid exposure or in a glucocorticoid condition, the
``interpretation`` of that context (each context its own reason that AREG+ NK there may be
pro-tumour, Wei 2025; unknown exposure: that reading cannot be excluded). Exposure is the
sheet's ``glucocorticoid`` or else read from its ``treatment`` text, and every flag states
it (``glucocorticoid``, ``glucocorticoid_source``). A CD56bright vs CD56dim
read-out per tube (``bright_dim``) is reported, never used as a rule (see
:mod:`nkflow.tl.caveats`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..exceptions import ConfigError, MetadataError
from ..io.metadata import is_stimulated
from ..io.pairing import SAMPLE_ROLES, ambiguous_pair_keys
from ._score_config import ScoringConfig, load_scoring_config
from ._score_context import add_context, bright_dim, evidence, interpretation, is_nk_population
from ._score_messages import NOTES, RULES, message_for, missing_baseline, worded
from ._score_names import contains_condition
from ._score_parts import (
    _NUMERIC_RULES,
    PAIR_KEY,
    POOLED_COLUMNS,
    _areg_rules,
    _control_for_pairs,
    _controls,
    _net,
    _pct,
    _pool,
)
from ._score_sensitivity import SENSITIVITY_COLUMNS, cutoff_sensitivity, fragile, fragile_sentence
from .caveats import SHORT_CAVEAT, caveats_comment, caveats_for_species, caveats_text
from .counts import COUNT_COLUMNS, CUT_END_COLUMNS

__all__ = ["NOTES", "RULES", "ScoreResult", "score", "scoring_config_for"]

logger = logging.getLogger(__name__)

_META_COLUMNS = [
    "sample_id",
    "donor",
    "tissue",
    "timepoint",
    "stimulation",
    "role",
    "batch",
    "species",
    "tissue_kind",
    "glucocorticoid",
    "treatment",
]


@dataclass(frozen=True)
class ScoreResult:
    """Repair profiles, flags, positive-control verdicts and the caveats that go with them.

    Attributes
    ----------
    scores
        One row per stimulated tube and population: the four parts of the profile.
    flags
        Same rows: ``areg_responsive``, ``repair_biased``, the rule raised (``rule``), the
        rules failed (``failed_rules``, ``;``-separated codes of :data:`RULES`), a
        ``message`` with the numbers, data-quality ``notes`` (codes of :data:`NOTES`) and
        the numbers themselves.
    controls
        One row per positive-control evaluation (control tube or stimulated tube's ILC gate).
    bright_dim
        CD56bright vs CD56dim AREG net per stimulated tube (consistency read-out).
    caveats
        The text to print with every scored output.
    config
        The definitions used.
    """

    scores: pd.DataFrame
    flags: pd.DataFrame
    controls: pd.DataFrame
    caveats: str
    config: ScoringConfig
    bright_dim: pd.DataFrame = field(default_factory=pd.DataFrame)

    def flagged(self) -> pd.DataFrame:
        """Return the flag rows of AREG-responsive populations."""
        return self.flags[self.flags["areg_responsive"]].reset_index(drop=True)

    def csv_text(self, table: str = "scores") -> str:
        """Return a table as CSV text headed by the caveats as ``#`` comment lines.

        Parameters
        ----------
        table
            ``"scores"``, ``"flags"``, ``"controls"`` or ``"bright_dim"``.

        Returns
        -------
        str
            Readable back with ``pandas.read_csv(..., comment="#")``.
        """
        frames = {
            "scores": self.scores,
            "flags": self.flags,
            "controls": self.controls,
            "bright_dim": self.bright_dim,
        }
        if table not in frames:
            raise ConfigError(f"unknown table {table!r}; valid: {', '.join(frames)}")
        body = frames[table].to_csv(index=False, lineterminator="\n", float_format="%.10g")
        return caveats_comment(text=self.caveats) + body  # worded for the scored species


# ---------------------------------------------------------------------------- inputs
def _metadata(metadata: pd.DataFrame | str | Path) -> pd.DataFrame:
    if isinstance(metadata, (str, Path)):
        try:
            meta = pd.read_csv(metadata, dtype=str, keep_default_na=False)
        except FileNotFoundError:
            raise MetadataError(metadata, ["does not exist (no such file)"]) from None
        except (OSError, ValueError) as exc:  # unreadable, or not a CSV pandas can parse
            raise MetadataError(metadata, [f"cannot read the sheet: {exc}"]) from None
        where = str(metadata)
    else:
        meta = metadata.copy()
        where = "metadata"
    if "sample_id" not in meta.columns:
        raise MetadataError(where, [f"no 'sample_id' column; have {list(meta.columns)}"])
    for col in _META_COLUMNS:
        if col not in meta.columns:
            meta[col] = ""
        # as text first: a Categorical column (an ordered timepoint) takes no "" category
        meta[col] = meta[col].astype(object).where(meta[col].notna(), "").astype(str).str.strip()
    dup = meta["sample_id"][meta["sample_id"].duplicated()].unique()
    if len(dup):
        raise MetadataError(where, [f"sample_id {s!r} appears more than once" for s in dup])
    role = meta["role"].str.lower()
    # `role` says stim/unstim; `stimulation` names the condition (io.metadata.is_stimulated);
    # any other sample tube is resting (io.pairing.is_resting): the rule run and check pair by
    kind = np.select(
        [
            role.str.startswith(("fmo:", "single_stain:")) | (role == "unstained"),
            role == "positive_control",
            meta.apply(is_stimulated, axis=1).to_numpy(dtype=bool),
            role.isin(SAMPLE_ROLES),
        ],
        ["control_stain", "positive_control", "stim", "unstim"],
        default="other",
    )
    meta["kind"] = kind
    return meta[[*_META_COLUMNS, "kind"]]


def _context_meta(meta: pd.DataFrame, cfg: ScoringConfig) -> pd.DataFrame:
    out = add_context(meta, cfg.glucocorticoid_conditions)
    species = out["species"].str.lower()
    out["species"] = np.where(species == "", cfg.species, species)
    return out


def _listed_unstim(meta: pd.DataFrame) -> dict[tuple[str, ...], list[str]]:
    """The sheet's unstimulated tubes (``sample_id``) by their ``PAIR_KEY`` values."""
    unstim = meta[meta["kind"] == "unstim"]
    listed: dict[tuple[str, ...], list[str]] = {}
    for key, sid in zip(map(tuple, unstim[PAIR_KEY].to_numpy()), unstim["sample_id"], strict=True):
        listed.setdefault(key, []).append(str(sid))
    return listed


def _zscore(x: pd.Series) -> pd.Series:
    sd = x.std(ddof=0)
    if not np.isfinite(sd) or sd == 0:
        return pd.Series(0.0, index=x.index)
    return ((x - x.mean()) / sd).fillna(0.0)


# --------------------------------------------------------------------------- score
def scoring_config_for(
    metadata: pd.DataFrame | str | Path, config: str | Path | ScoringConfig | None = None
) -> ScoringConfig:
    """The definitions :func:`score` applies to this sheet.

    Parameters
    ----------
    metadata
        The metadata sheet (DataFrame or CSV path).
    config
        As for :func:`score`: ``None`` picks the sheet's species (mouse only when every
        tube is mouse, else human).

    Returns
    -------
    ScoringConfig
    """
    if config is None:
        meta = _metadata(metadata)
        species = set(meta["species"].str.lower()) - {""}
        config = "mouse" if species == {"mouse"} else "human"
    return load_scoring_config(config)


def _numeric_counts(counts: pd.DataFrame) -> pd.DataFrame:
    """Count columns as numbers, sample ids as text.

    Tables joined from records mix ints, None and pd.NA: a tube whose panel lacks a
    read-out has no count for it (None once read back from JSON); joined with tubes that
    have counts, the column is of object dtype, which the sums below cannot take.
    """
    # sample ids as text, as the metadata's: read back from CSV, ids 1, 2 ... are integers
    # and matched no metadata row (every flag was silently dropped)
    fixed: dict[str, pd.Series] = {"sample_id": counts["sample_id"].astype(str).str.strip()}
    for col in CUT_END_COLUMNS:  # optional: NaN (no interval known) when absent, as float
        fixed[col] = np.nan
    for col in (*COUNT_COLUMNS, *(c for c in CUT_END_COLUMNS if c in counts)):
        end = col in CUT_END_COLUMNS
        if counts[col].dtype == object or end:
            try:
                number = pd.to_numeric(counts[col])
            except (TypeError, ValueError) as exc:
                raise ConfigError(
                    f"counts column {col!r} holds a value that is no count: {exc}"
                ) from None
            fixed[col] = number.astype(float) if end else number
    return counts.assign(**fixed)


def score(
    counts: pd.DataFrame,
    metadata: pd.DataFrame | str | Path,
    *,
    config: str | Path | ScoringConfig | None = None,
    positive_control: Mapping[str, bool] | pd.DataFrame | None = None,
    unavailable: Mapping[str, str] | None = None,
) -> ScoreResult:
    """Repair profile and flags for every population of every stimulated tube.

    Parameters
    ----------
    counts
        Concatenated outputs of :func:`nkflow.tl.count_positive` (one per sample).
    metadata
        The metadata sheet (DataFrame or CSV path; columns per docs/contracts.md). Tubes
        are paired on donor, tissue, timepoint and batch; replicate unstimulated tubes of one
        key are pooled, but several of one key with no donor named are no baseline (they
        may be different donors: rule ``UNSTIM_AMBIGUOUS``). ``role`` ``positive_control``
        tubes supply the batch's control.
    config
        ``"human"`` / ``"mouse"`` defaults, a lab TOML path or a :class:`ScoringConfig`;
        ``None`` picks the species of the sheet (human if not given).
    positive_control
        Optional verdicts that replace the data-derived control per batch, e.g. from an
        ELISA: ``{batch: passed}`` or a table with ``batch`` and ``passed`` columns.
    unavailable
        ``sample_id`` -> why a tube of the sheet has no counts (its status and reason,
        e.g. a file that failed to read): a stimulated tube whose unstimulated tube is
        listed but has no counts names it, and this, in its ``NO_UNSTIM`` message.

    Returns
    -------
    ScoreResult
        ``scores``, ``flags``, ``controls`` tables and the ``caveats`` text (also in each
        table's ``attrs["caveats"]`` and a short ``caveat`` column). Percentages and nets are
        in percentage points.

    Raises
    ------
    ConfigError
        ``counts`` lacks a column of :func:`count_positive`'s output or holds a value that
        is no count, or the scoring config cannot be loaded (:func:`load_scoring_config`).
    MetadataError
        The sheet has no ``sample_id`` column or repeats one, or a sample in ``counts`` is
        not in it.
    """
    meta = _metadata(metadata)
    cfg = scoring_config_for(meta, config)
    meta = _context_meta(meta, cfg)
    need = ["sample_id", "population", *COUNT_COLUMNS]
    lacking = [col for col in need if col not in counts.columns]
    if lacking:
        raise ConfigError(
            f"counts table lacks column(s) {lacking}; it must come from "
            f"nkflow.tl.count_positive (columns: {', '.join(need)})"
        )
    counts = _numeric_counts(counts)
    missing = sorted(set(counts["sample_id"].astype(str)) - set(meta["sample_id"]))
    if missing:
        raise MetadataError(
            "metadata", [f"sample_id {s!r} is in the counts but not in the sheet" for s in missing]
        )
    c = counts.drop(columns=[k for k in ("tissue", "batch") if k in counts.columns])
    c = c.assign(sample_id=c["sample_id"].astype(str)).merge(meta, on="sample_id", how="left")
    # several unstimulated tubes of a key with no donor may be different donors: no baseline
    ambiguous = ambiguous_pair_keys(meta[meta["kind"] == "unstim"])
    unstim = c[c["kind"] == "unstim"]
    sure = [k not in ambiguous for k in map(tuple, unstim[PAIR_KEY].to_numpy())]
    unstim = unstim[np.array(sure, dtype=bool)]  # an array: an empty list selects columns
    unstim_pooled = _pool(unstim, [*PAIR_KEY, "population"], "_unstim")
    stim = c[c["kind"] == "stim"].rename(columns={k: f"{k}_stim" for k in POOLED_COLUMNS})
    pairs = stim.merge(unstim_pooled, on=[*PAIR_KEY, "population"], how="left")
    unstim_keys = set(map(tuple, unstim[PAIR_KEY].to_numpy()))
    pair_keys = list(map(tuple, pairs[PAIR_KEY].to_numpy()))
    has_unstim = np.array([k in unstim_keys for k in pair_keys], dtype=bool)
    shared_unstim = np.array([k in ambiguous for k in pair_keys], dtype=bool)
    listed = _listed_unstim(meta)  # a partner listed but without counts is named
    no_base = [
        missing_baseline(listed.get(k, []), unavailable or {}) if not has else ""
        for k, has in zip(pair_keys, has_unstim, strict=True)
    ]
    if not len(pairs):
        logger.warning("no stimulated tubes in the metadata sheet: nothing to score")
    if shared_unstim.any():
        tubes = pairs.loc[shared_unstim, "sample_id"].nunique()
        logger.warning("%d stimulated tube(s) not scored: %s", tubes, RULES["UNSTIM_AMBIGUOUS"])
    controls = _controls(c, pairs, unstim_pooled, cfg)
    ctl = _control_for_pairs(pairs, controls, positive_control)
    pairs = pairs.merge(ctl.drop(columns="batch"), on="sample_id", how="left")
    conf = cfg.confidence
    res = _areg_rules(
        pairs,
        min_net=cfg.min_net,
        min_areg=cfg.min_areg_events,
        min_events=cfg.min_events,
        conf=conf,
    )
    s = pairs[["batch", "donor", "tissue", "timepoint", "condition", "sample_id"]].copy()
    s["unstim_sample_id"] = pairs["sample_id_unstim"].fillna("").to_numpy()
    s["population"] = pairs["population"].to_numpy()
    s["flaggable"] = [cfg.is_flaggable(p) for p in s["population"]]
    s["condition_may_flag"] = [cfg.condition_may_flag(k) for k in s["condition"]]
    for col in (
        "species",
        "tissue_kind",
        "glucocorticoid",
        "glucocorticoid_source",
        "treatment",
        "context",
    ):
        s[col] = pairs[col].fillna("").astype(str).to_numpy()
    s["exploratory"] = (s["species"] == "mouse").to_numpy()
    nk = [is_nk_population(p, f) for p, f in zip(s["population"], s["flaggable"], strict=True)]
    s["evidence"] = [evidence(sp, k) for sp, k in zip(s["species"], nk, strict=True)]
    s["interpretation"] = [
        interpretation(ctx, src, nk=k)
        for ctx, src, k in zip(s["context"], s["glucocorticoid_source"], nk, strict=True)
    ]
    for col in ("n_events", "n_areg"):
        s[f"{col}_stim"] = pairs[f"{col}_stim"].to_numpy(float)
        s[f"{col}_unstim"] = pairs[f"{col}_unstim"].to_numpy(float)
    s["pct_areg_stim"] = _pct(pairs["n_areg_stim"], pairs["n_events_stim"])
    s["pct_areg_unstim"] = _pct(pairs["n_areg_unstim"], pairs["n_events_unstim"])
    s["areg_net"], s["areg_net_ci_low"], s["areg_net_ci_high"] = res["net"], res["lo"], res["hi"]
    # polarisation on net values; negative nets (noise) count as no response
    for col in ("n_areg_only", "n_ifng_only", "n_areg_ifng"):
        s[f"net_{col[2:]}"] = _net(pairs, col, conf)[0]
    a = s["net_areg_only"].clip(lower=0.0).to_numpy()
    b = s["net_ifng_only"].clip(lower=0.0).to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        s["ri"] = np.where(a + b > 0, a / (a + b), np.nan)
    s["ifng_net"], s["ifng_net_ci_low"], s["ifng_net_ci_high"] = _net(pairs, "n_ifng", conf)
    s["pct_nkg2d_unstim"] = _pct(pairs["n_nkg2d_unstim"], pairs["n_events_unstim"])
    s["pct_nkg2d_stim"] = _pct(pairs["n_nkg2d_stim"], pairs["n_events_stim"])
    s["cd107a_net"], s["cd107a_net_ci_low"], s["cd107a_net_ci_high"] = _net(pairs, "n_cd107a", conf)
    s["residency_fraction"] = _pct(pairs["n_trnk_unstim"], pairs["n_events_unstim"]) / 100.0
    for col in ("control_source", "control_sample_id"):
        s[col] = pairs[col].fillna("").to_numpy()
    s["control_net"] = pairs["control_net"].to_numpy(float)
    s["control_ci_low"] = pairs["control_ci_low"].to_numpy(float)
    s["control_passed"] = pairs["control_passed"].astype("boolean").to_numpy()
    s["control_verdict"] = pairs["control_verdict"].fillna("").astype(str).to_numpy()

    no_areg = pairs["n_areg_stim"].isna().to_numpy() | (
        has_unstim & pairs["n_areg_unstim"].isna().to_numpy()
    )
    first = counts.drop_duplicates("sample_id").set_index("sample_id")
    s["areg_threshold"] = s["sample_id"].map(first.get("threshold_areg", pd.Series(dtype=float)))
    s["areg_rule"] = s["sample_id"].map(first.get("areg_rule", pd.Series(dtype=str))).fillna("")
    s["areg_control_file"] = (
        s["sample_id"].map(first.get("areg_control_file", pd.Series(dtype=str))).fillna("")
    )
    channel = first["areg_channel"] if "areg_channel" in first.columns else None
    not_in_panel = (
        np.zeros(len(s), dtype=bool)
        if channel is None
        else (s["sample_id"].map(channel.fillna("").astype(str)) == "").to_numpy()
    )
    # a gate not set leaves every count NA (EVENTS_BELOW_MIN): no sign of a missing AREG cut
    unmeasured = pairs["n_events_stim"].isna().to_numpy() | (
        has_unstim & pairs["n_events_unstim"].isna().to_numpy()
    )
    no_areg &= ~unmeasured | not_in_panel | s["areg_threshold"].isna().to_numpy()
    rule = s["areg_rule"].astype(str).str.lower()
    not_fmo = (
        (~rule.str.contains("fmo") | rule.str.contains("fallback")).to_numpy()
        if cfg.require_fmo_threshold
        else np.zeros(len(s), dtype=bool)
    )
    ctl_known = ~pd.isna(s["control_passed"].to_numpy(dtype=object))
    ctl_pass = np.array(
        [bool(v) if k else False for v, k in zip(s["control_passed"], ctl_known, strict=True)]
    )
    failed_all: list[list[str]] = []
    for i in range(len(s)):
        f: list[str] = []
        if shared_unstim[i]:
            f.append("UNSTIM_AMBIGUOUS")
        elif not has_unstim[i]:
            f.append("NO_UNSTIM")
        if no_areg[i]:
            f.append("AREG_NOT_IN_PANEL" if not_in_panel[i] else "NO_AREG_THRESHOLD")
        elif not_fmo[i]:
            f.append("AREG_THRESHOLD_NOT_FMO")
        if not s["flaggable"].iat[i]:
            f.append("NOT_FLAGGABLE")
        if not s["condition_may_flag"].iat[i]:
            f.append("CONDITION_NOT_FLAGGABLE")
        if has_unstim[i] and not no_areg[i]:
            f += [r for r in _NUMERIC_RULES if res[r][i]]
        if cfg.require_positive_control:
            if s["control_verdict"].iat[i] == "insufficient":
                f.append("POSITIVE_CONTROL_INSUFFICIENT")
            elif not ctl_known[i]:
                f.append("POSITIVE_CONTROL_MISSING")
            elif not ctl_pass[i]:
                f.append("POSITIVE_CONTROL_FAILED")
        failed_all.append(f)
    responsive = np.array([not f for f in failed_all], dtype=bool)
    s["areg_responsive"] = responsive
    s["repair_biased"] = responsive & (np.nan_to_num(s["ri"].to_numpy(), nan=-1.0) > cfg.ri_cut)
    # the flag's AREG rules again at both ends of the AREG cut-off's own interval
    sens = cutoff_sensitivity(pairs, counts, responsive, cfg)
    s = s.assign(**{col: sens[col].array for col in SENSITIVITY_COLUMNS})
    shaky = fragile(sens)
    s["order_score"] = np.nan
    s["order_rank"] = pd.array([pd.NA] * len(s), dtype="Int64")
    if cfg.ranking and len(s):
        ok = s["flaggable"].to_numpy() & np.isfinite(s["areg_net"].to_numpy())
        sub = s[ok]
        # conditions are never ranked against each other, nor gated populations against
        # metaclusters: those come from a random fit, and ranked together a gated row's
        # score moved with the clustering's random state and the sheet's order
        clustered = sub["population"].astype(str).str.startswith("metacluster:")
        within = [sub["batch"], sub["condition"], clustered.rename("metacluster")]
        z = sub.groupby(within)["areg_net"].transform(_zscore) + sub.groupby(within)[
            "ri"
        ].transform(_zscore)
        if cfg.residency_in_score:
            z = z + sub.groupby(within)["residency_fraction"].transform(_zscore)
        s.loc[ok, "order_score"] = z
        s.loc[ok, "order_rank"] = (
            s.loc[ok]
            .groupby(within)["order_score"]
            .rank(ascending=False, method="min")
            .astype("Int64")
        )
    s["caveat"] = SHORT_CAVEAT

    records = s.to_dict("records")
    # a condition with an inhibitor of NK AREG (TGF-beta): a flag there is unexpected
    inhibited = np.array(
        [contains_condition(k, cfg.inhibitor_conditions) for k in s["condition"]], dtype=bool
    )
    control_events = pairs[["control_n_events", "control_baseline_n_events"]].to_numpy(float)
    for record, value, events, base in zip(
        records, inhibited, control_events, no_base, strict=True
    ):
        record["inhibitor_condition"] = bool(value)
        record["unstim_missing"] = base
        record["control_n_events"], record["control_baseline_n_events"] = events
    flags = s[
        [
            "batch",
            "donor",
            "tissue",
            "timepoint",
            "condition",
            "sample_id",
            "unstim_sample_id",
            "population",
            "areg_responsive",
            "repair_biased",
            "species",
            "exploratory",
            "tissue_kind",
            "glucocorticoid",
            "glucocorticoid_source",
            "treatment",
            "context",
        ]
    ].copy()
    flags["rule"] = np.where(
        s["repair_biased"], "REPAIR_BIASED", np.where(responsive, "AREG_RESPONSIVE", "")
    )
    flags["failed_rules"] = [";".join(f) for f in failed_all]
    flags["message"] = [
        worded(message_for(r, f, cfg) + fragile_sentence(x, cfg), r, not f)
        for r, f, (_, x) in zip(records, failed_all, sens.iterrows(), strict=True)
    ]
    pairs_bd = bright_dim(s, cfg.consistency_bright, cfg.consistency_dim)
    low_bright = set(pairs_bd.loc[pairs_bd["bright_below_dim"].astype(bool), "sample_id"])
    below = s["areg_net_ci_high"].to_numpy(float) < 0.0
    mismatch = {
        key: ~np.isclose(
            pairs[f"threshold_{key}"].to_numpy(float),
            pairs[f"threshold_{key}_unstim"].to_numpy(float),
            equal_nan=True,
        )
        & has_unstim
        for key in ("areg", "ifng", "cd107a")
        if f"threshold_{key}" in pairs.columns and f"threshold_{key}_unstim" in pairs.columns
    }
    names = {
        "areg": cfg.markers["areg"],
        "ifng": cfg.markers["ifng"],
        "cd107a": cfg.markers["cd107a"],
    }
    notes = []
    for i in range(len(s)):
        note = ["UNSTIM_ABOVE_STIM"] if below[i] else []
        if inhibited[i] and responsive[i]:
            note.append("INHIBITOR_CONDITION")
        if shaky[i]:
            note.append("CUTOFF_FRAGILE")
        bad = [names[k] for k, m in mismatch.items() if m[i]]
        if bad:
            note.append("THRESHOLD_MISMATCH:" + ",".join(bad))
        if s["sample_id"].iat[i] in low_bright and s["population"].iat[i] in (
            cfg.consistency_bright,
            cfg.consistency_dim,
        ):
            note.append("BRIGHT_BELOW_DIM")
        notes.append(";".join(note))
    flags["notes"] = notes
    if below.any():
        logger.warning(
            "%d population x tube rows: %s", int(below.sum()), NOTES["UNSTIM_ABOVE_STIM"]
        )
    for col in (
        "areg_net",
        "areg_net_ci_low",
        "areg_net_ci_high",
        "n_areg_stim",
        "n_events_stim",
        "n_events_unstim",
        "ri",
        "ifng_net",
        "control_source",
        "control_passed",
        "control_verdict",
        "control_net",
        "control_ci_low",
        "areg_net_at_cut_ci_low",
        "areg_net_at_cut_ci_high",
        "failed_rules_at_cut_ci_low",
        "failed_rules_at_cut_ci_high",
        "holds_across_cutoff_interval",
        "evidence",
        "interpretation",
        "caveat",
    ):
        flags[col] = s[col].to_numpy()
    # worded for the scored species: a mouse batch's tables do not state human NK biology
    text = caveats_for_species(caveats_text(), set(s["species"].astype(str).str.lower()) - {""})
    for table in (s, flags, controls, pairs_bd):
        table.attrs["caveats"] = text
    logger.info(
        "scored %d population x tube rows; %d AREG-responsive", len(s), int(responsive.sum())
    )
    return ScoreResult(
        scores=s.reset_index(drop=True),
        flags=flags.reset_index(drop=True),
        controls=controls,
        caveats=text,
        config=cfg,
        bright_dim=pairs_bd,
    )
