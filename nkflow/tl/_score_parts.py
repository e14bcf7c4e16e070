"""Building blocks of repair scoring: pooling tubes, net responses and the positive control.

Split from :mod:`nkflow.tl.score` (which assembles the profile and the flags) so each module
stays readable; nothing here is public API.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import ConfigError
from ..io.pairing import PAIR_KEY as _PAIR_COLUMNS
from ..stats import newcombe_interval
from ._score_config import ScoringConfig
from .counts import COUNT_COLUMNS, CUT_END_COLUMNS

__all__ = ["CONTROL_VERDICTS", "PAIR_KEY", "POOLED_COLUMNS", "THRESHOLD_COLUMNS"]

PAIR_KEY = list(_PAIR_COLUMNS)
THRESHOLD_COLUMNS = ("threshold_areg", "threshold_ifng", "threshold_nkg2d", "threshold_cd107a")
#: counts summed over replicate tubes and suffixed ``_stim`` / ``_unstim`` (score adds the
#: cut-off-end counts as NaN when a counts table lacks them)
POOLED_COLUMNS = (*COUNT_COLUMNS, *CUT_END_COLUMNS)


def _pool(frame: pd.DataFrame, keys: list[str], suffix: str) -> pd.DataFrame:
    """Sum counts over replicate tubes; a count missing in any tube makes the sum NA."""
    cols = [c for c in POOLED_COLUMNS if c in frame.columns or c in COUNT_COLUMNS]
    if frame.empty:  # e.g. every unstimulated tube failed: same columns, no rows
        extra = [c for c in THRESHOLD_COLUMNS if c in frame.columns]
        names = [*keys, *(f"{c}{suffix}" for c in [*cols, "sample_id", *extra])]
        return pd.DataFrame({n: pd.Series(dtype=frame[n].dtype if n in frame else "float64")
                             for n in names})  # fmt: skip
    numeric = frame[cols].astype("float64")
    grouped = numeric.groupby([frame[k] for k in keys], sort=False)
    sums = grouped.sum(min_count=1)
    has_na = numeric.isna().groupby([frame[k] for k in keys], sort=False).any()
    sums = sums.mask(has_na)
    ids = frame.groupby(keys, sort=False)["sample_id"].agg(lambda s: ";".join(sorted(set(s))))
    out = sums.add_suffix(suffix)
    out[f"sample_id{suffix}"] = ids
    # cut-offs used in the pooled tubes: kept when they agree, NaN when they differ
    for col in THRESHOLD_COLUMNS:
        if col in frame.columns:
            values = frame[col].astype("float64").groupby([frame[k] for k in keys], sort=False)
            first, lo, hi = values.first(), values.min(), values.max()
            out[f"{col}{suffix}"] = first.where(np.isclose(lo, hi, equal_nan=True))
    return out.reset_index()


def _pct(k: Any, n: Any) -> np.ndarray:
    k, n = np.asarray(k, float), np.asarray(n, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, 100.0 * k / n, np.nan)


def _net(frame: pd.DataFrame, col: str, conf: float) -> tuple[np.ndarray, ...]:
    d, lo, hi = newcombe_interval(
        frame[f"{col}_stim"].to_numpy(float),
        frame["n_events_stim"].to_numpy(float),
        frame[f"{col}_unstim"].to_numpy(float),
        frame["n_events_unstim"].to_numpy(float),
        confidence=conf,
    )
    return 100.0 * d, 100.0 * lo, 100.0 * hi


def _areg_rules(
    frame: pd.DataFrame, *, min_net: float, min_areg: int, min_events: int, conf: float
) -> dict[str, np.ndarray]:
    """AREG_net, its interval and one failure mask per numeric rule (NaN counts fail)."""
    net, lo, hi = _net(frame, "n_areg", conf)
    n_s = frame["n_events_stim"].to_numpy(float)
    n_u = frame["n_events_unstim"].to_numpy(float)
    k_s = frame["n_areg_stim"].to_numpy(float)
    return {
        "net": net,
        "lo": lo,
        "hi": hi,
        "EVENTS_BELOW_MIN": ~((n_s >= min_events) & (n_u >= min_events)),
        "AREG_EVENTS_BELOW_MIN": ~(k_s >= min_areg),
        "CI_LOWER_NOT_ABOVE_ZERO": ~(lo > 0.0),
        "NET_BELOW_MIN": ~(net >= min_net),
    }


_NUMERIC_RULES = (
    "EVENTS_BELOW_MIN",
    "AREG_EVENTS_BELOW_MIN",
    "CI_LOWER_NOT_ABOVE_ZERO",
    "NET_BELOW_MIN",
)


# ------------------------------------------------------------------ positive control
def _control_tube_baselines(
    counts: pd.DataFrame, tubes: pd.DataFrame, cfg: ScoringConfig
) -> pd.DataFrame:
    """Pair each positive-control tube with the unstimulated control gate it is judged against.

    The unstimulated tube of the same donor, tissue, timepoint and batch is used when its
    control gate holds enough events; otherwise the batch's unstimulated tubes of the same
    tissue are pooled, then all of the batch's (an ILC-enriched control tube rarely has an
    unstimulated twin, and a blood tube's ILC gate holds only tens of events).
    """
    pop = cfg.control_population
    unstim = counts[(counts["kind"] == "unstim") & (counts["population"] == pop)]
    levels = [
        _pool(unstim, PAIR_KEY, "_unstim"),
        _pool(unstim, ["tissue", "batch"], "_unstim"),
        _pool(unstim, ["batch"], "_unstim"),
    ]
    stim = tubes.rename(columns={c: f"{c}_stim" for c in POOLED_COLUMNS}).reset_index(drop=True)
    chosen = []
    for i in range(len(stim)):
        tube = stim.iloc[[i]]
        best = None
        for level in levels:
            keys = [k for k in PAIR_KEY if k in level.columns]
            hit = tube.merge(level, on=keys, how="inner")
            if hit.empty:
                continue
            if best is None or hit["n_events_unstim"].iat[0] > best["n_events_unstim"].iat[0]:
                best = hit
            if hit["n_events_unstim"].iat[0] >= cfg.control_min_events:
                best = hit
                break
        chosen.append(best if best is not None else tube)
    out = pd.concat(chosen, ignore_index=True)
    # a control tube with no unstimulated baseline anywhere in its batch keeps NaN counts
    for col in [*(f"{c}_unstim" for c in COUNT_COLUMNS), "sample_id_unstim"]:
        if col not in out.columns:
            out[col] = np.nan
    out["control_source"] = "positive_control tube"
    return out


#: verdicts of a positive control (``controls["verdict"]``)
CONTROL_VERDICTS = ("passed", "failed", "insufficient", "no baseline")


def _control_verdict(failed: str) -> str:
    """A control's verdict from the rules it failed (``;``-separated).

    ``insufficient`` (not judged) when its gate holds too few events in either tube, or too
    few AREG+ events while its net and interval pass: "did not respond" is only said of a
    control that had the events to show a response and showed none (BIOLOGY.md 6(c)).
    """
    codes = set(filter(None, failed.split(";")))
    if "NO_UNSTIM" in codes:
        return "no baseline"
    if not codes:
        return "passed"
    if "EVENTS_BELOW_MIN" in codes or codes == {"AREG_EVENTS_BELOW_MIN"}:
        return "insufficient"
    return "failed"


def _controls(
    counts: pd.DataFrame,
    pairs: pd.DataFrame,
    unstim_pooled: pd.DataFrame,
    cfg: ScoringConfig,
) -> pd.DataFrame:
    pop = cfg.control_population
    rows = []
    tubes = counts[(counts["kind"] == "positive_control") & (counts["population"] == pop)]
    if len(tubes):
        rows.append(_control_tube_baselines(counts, tubes, cfg))
    own = pairs[(pairs["population"] == pop) & ~pairs["batch"].isin(tubes["batch"])].copy()
    if len(own):
        own["control_source"] = "stimulated tube's own gate"
        rows.append(own)
    if not rows:
        return pd.DataFrame(
            columns=[
                "batch",
                "condition",
                "control_source",
                "control_sample_id",
                "baseline_sample_id",
                "population",
                "n_events",
                "n_areg",
                "baseline_n_events",
                "net",
                "ci_low",
                "ci_high",
                "passed",
                "verdict",
                "failed_rules",
            ]
        )
    ctl = pd.concat(rows, ignore_index=True)
    res = _areg_rules(
        ctl,
        min_net=cfg.control_min_net,
        min_areg=cfg.control_min_areg_events,
        min_events=cfg.control_min_events,
        conf=cfg.confidence,
    )
    no_base = ctl["sample_id_unstim"].isna().to_numpy()
    failed = [
        ";".join(["NO_UNSTIM"] if no_base[i] else [r for r in _NUMERIC_RULES if res[r][i]])
        for i in range(len(ctl))
    ]
    verdicts = [_control_verdict(f) for f in failed]
    return pd.DataFrame(
        {
            "batch": ctl["batch"].to_numpy(),
            "condition": (
                ctl["condition"].fillna("").astype(str).to_numpy()
                if "condition" in ctl.columns
                else ""
            ),
            "control_source": ctl["control_source"].to_numpy(),
            "control_sample_id": ctl["sample_id"].to_numpy(),
            "baseline_sample_id": ctl["sample_id_unstim"].fillna("").to_numpy(),
            "population": pop,
            "n_events": ctl["n_events_stim"].to_numpy(float),
            "n_areg": ctl["n_areg_stim"].to_numpy(float),
            "baseline_n_events": ctl["n_events_unstim"].to_numpy(float),
            "net": res["net"],
            "ci_low": res["lo"],
            "ci_high": res["hi"],
            # a control without its baseline is missing, one with too few events not judged:
            # neither failed
            "passed": pd.array(
                [{"passed": True, "failed": False}.get(v, pd.NA) for v in verdicts],
                dtype="boolean",
            ),
            "verdict": verdicts,
            "failed_rules": failed,
        }
    )


def _control_for_pairs(
    pairs: pd.DataFrame,
    controls: pd.DataFrame,
    positive_control: Mapping[str, bool] | pd.DataFrame | None,
) -> pd.DataFrame:
    """One control verdict per stimulated tube: user verdict, control tube, or own ILC gate.

    A positive-control tube of the same batch and stimulation condition is preferred; any
    control tube of the batch comes next (it shows that the AREG stain works in the batch),
    then the stimulated tube's own ILC gate.
    """
    out = pd.DataFrame(
        {
            "sample_id": pairs["sample_id"].unique(),
        }
    )
    first = pairs.drop_duplicates("sample_id").set_index("sample_id")
    out["batch"] = out["sample_id"].map(first["batch"])
    condition_of = (
        out["sample_id"].map(first["condition"]).fillna("").astype(str)
        if "condition" in first.columns
        else pd.Series("", index=out.index)
    )
    out["control_source"] = ""
    out["control_sample_id"] = ""
    out["control_net"] = np.nan
    out["control_ci_low"] = np.nan
    out["control_passed"] = pd.array([pd.NA] * len(out), dtype="boolean")
    out["control_verdict"] = ""
    out["control_n_events"] = np.nan
    out["control_baseline_n_events"] = np.nan
    tube = controls[controls["control_source"] == "positive_control tube"]
    own = controls[controls["control_source"] != "positive_control tube"]
    for i, (sid, batch) in enumerate(zip(out["sample_id"], out["batch"], strict=True)):
        pick = None
        if (hits := tube[tube["batch"] == batch]).shape[0]:
            order = hits.assign(
                _same=hits["condition"].astype(str) == condition_of.iat[i],
                _ok=hits["passed"].fillna(False).astype(bool),
                _known=hits["passed"].notna(),
            )
            pick = order.sort_values(["_same", "_ok", "_known", "ci_low"], ascending=False).iloc[0]
        elif (hits := own[own["control_sample_id"] == sid]).shape[0]:
            pick = hits.iloc[0]
        if pick is not None:
            out.loc[i, ["control_source", "control_sample_id"]] = [
                pick["control_source"],
                pick["control_sample_id"],
            ]
            out.loc[i, ["control_net", "control_ci_low"]] = [pick["net"], pick["ci_low"]]
            out.loc[i, ["control_n_events", "control_baseline_n_events"]] = [
                pick["n_events"],
                pick["baseline_n_events"],
            ]
            out.loc[i, "control_passed"] = pick["passed"]
            out.loc[i, "control_verdict"] = pick["verdict"]
    if isinstance(positive_control, pd.DataFrame) and not {"batch", "passed"} <= set(
        positive_control.columns
    ):
        raise ConfigError(
            "positive_control table needs columns 'batch' and 'passed'; has "
            f"{list(positive_control.columns)}"
        )
    if positive_control is not None:
        verdicts = (
            dict(
                zip(
                    positive_control["batch"].astype(str),
                    positive_control["passed"].astype(bool),
                    strict=True,
                )
            )
            if isinstance(positive_control, pd.DataFrame)
            else {str(k): bool(v) for k, v in positive_control.items()}
        )
        user = out["batch"].isin(list(verdicts))
        out.loc[user, "control_source"] = "user verdict"
        out.loc[user, "control_sample_id"] = ""
        out.loc[user, "control_passed"] = out.loc[user, "batch"].map(verdicts).astype("boolean")
        out.loc[user, "control_verdict"] = np.where(
            out.loc[user, "control_passed"].astype(bool), "passed", "failed"
        )
    return out
