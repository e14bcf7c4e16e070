"""What a container must be before it is gated: transformed, and a whole sample.

Both failures give plausible but wrong populations, not an error of their own: linear
values put every density cut in the wrong place, and one population's events re-gated
have no negative peaks left. :func:`nkflow.gating.gate` checks both first.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._containers import require_one_sample as _require_one_sample
from ..exceptions import GatingError
from ..io.fcs import sample_info
from ..io.records import nkflow_record
from .membership import member_mask

__all__ = [
    "ANCHOR_POPULATIONS",
    "require_one_sample",
    "require_transformed",
    "require_whole_sample",
]

#: the populations the shipped templates anchor NK identity on
ANCHOR_POPULATIONS = ("NK",)

#: a transformed fluorescence channel stays far below this (logicle 0-1, arcsinh ~15)
_LINEAR_ABOVE = 100.0


def require_transformed(adata: Any) -> None:
    """Refuse a container whose fluorescence channels were never transformed.

    Templates find their thresholds on the logicle/arcsinh scale; on linear values their
    density rules give plausible but wrong populations. Refused when every fluorescence
    channel has an empty ``var["transform"]`` and the values reach the linear range (a
    container transformed by hand, with its own values, passes; set ``var["transform"]``
    to say how).

    Raises
    ------
    GatingError
        Naming the sample and the fix (:func:`nkflow.pp.transform`).
    """
    var = adata.var
    if "transform" not in var.columns or "kind" not in var.columns:
        return
    fluorescence = (var["kind"].astype(str) == "fluorescence").to_numpy()
    if not fluorescence.any() or (var["transform"].astype(str)[fluorescence] != "").any():
        return
    rows = np.asarray(adata.X[:: max(1, adata.n_obs // 20_000)])[:, fluorescence]
    top = float(np.nanpercentile(rows, 99.9)) if rows.size else 0.0
    if top > _LINEAR_ABOVE:
        name = sample_info(adata).get("sample_id") or "sample"
        raise GatingError(
            f"{name}: the fluorescence channels are not transformed (linear values up to "
            f"{top:,.0f}); run nk.pp.compensate(adata) and nk.pp.transform(adata) before "
            "gating: templates find their thresholds on the logicle/arcsinh scale"
        )


def require_one_sample(adata: Any, caller: str) -> None:
    """Refuse a container of several samples (``anndata.concat`` of gated samples).

    Its ``uns`` keeps the first sample's gates and thresholds: gated or counted, the
    pooled events of all of them would be the first one's.

    Parameters
    ----------
    adata
        The container.
    caller
        The function refusing it, for the message.

    Raises
    ------
    ConfigError
        ``obs["sample_id"]`` holds more than one value; nothing was changed.
    """
    _require_one_sample(
        adata,
        caller,
        " (anndata.concat of samples keeps the first one's gates and thresholds in uns): "
        "their pooled events would be taken for the first one's; call it per sample",
    )


def require_whole_sample(adata: Any, caller: str = "gate") -> None:
    """Refuse the events of one gated population (``Results.kept_events``) as a sample.

    A container of several samples is refused first (:func:`require_one_sample`).

    Gated again, its scatter, lineage and NK gates find no negative population: every
    gate is misplaced and the stored membership overwritten (NK 0 of 2,326 NK events).
    A container whose every event is in its own gated NK population is such a subset.

    Raises
    ------
    GatingError
        Naming the sample and what to do instead.
    """
    require_one_sample(adata, caller)
    gating = nkflow_record(adata, "gating") or {}
    gated = {p.get("name"): p.get("parent") for p in gating.get("populations") or []}
    for name in ANCHOR_POPULATIONS:
        if (
            gated.get(name) is not None  # the anchor gate, below another gate
            and name in adata.obs.columns
            and adata.n_obs
            and bool(member_mask(adata.obs[name]).all())  # <NA>: the gate was not set
        ):
            sid = sample_info(adata).get("sample_id") or "sample"
            advice = (
                "gate the whole sample (nk.read_fcs of its file), and use this container's "
                "obs columns for its subsets"
                if caller == "gate"
                else f"give {caller} the whole gated sample: its populations are obs columns"
            )
            raise GatingError(
                f"{sid}: every one of its {adata.n_obs:,} events is in its gated population "
                f"{name!r}: these are one population's events, not a sample; {advice}"
            )
