"""Per-population event counts drawn from the simulator's biology, for validating scoring.

Simulating events is exact but slow; scoring only sees counts. For one donor, tissue and
timepoint this module takes the simulator's leaf composition
(:func:`nkflow.datasets.populations.composition`) and its per-leaf AREG / IFN-g / CD107a
rates for each condition (:func:`nkflow.datasets.simulate.functional_rates` with the
design's planted nets), and draws what :func:`nkflow.tl.count_positive` would count: each
cell of a tube independently falls in a population with the composition's probability and
is AREG+ / IFN-g+ with that population's mixture of leaf rates (so every count is exactly
binomial and the planted net is known). Thousands of donor x condition pairs take seconds.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ..exceptions import ConfigError
from .populations import composition, labels_for
from .simulate import functional_rates, is_stimulated_condition
from .truth import population_leaves

__all__ = ["COUNT_COLUMNS", "planted_nets", "simulate_score_counts"]

#: the count columns of :func:`nkflow.tl.count_positive` (docs/contracts.md)
COUNT_COLUMNS = ("n_events", "n_areg", "n_ifng", "n_nkg2d", "n_cd107a", "n_areg_only",
                 "n_ifng_only", "n_areg_ifng", "n_trnk")  # fmt: skip
_SKIP = ("Cells", "Singlets", "Live", "Lymphocytes")


def _mixture(species: str, tissue: str, nk_enrichment: float) -> tuple[dict, np.ndarray]:
    labels = labels_for(species)
    prob = composition(species, tissue, nk_enrichment=nk_enrichment)
    pops = {k: v for k, v in population_leaves(species).items() if k not in _SKIP}
    weights = {}
    for name, leaves in pops.items():
        idx = [labels.index(leaf) for leaf in leaves]
        w = np.zeros(len(labels))
        w[idx] = prob[idx]
        weights[name] = w
    return weights, prob


def planted_nets(
    species: str,
    tissue: str,
    areg_net: Mapping[str, Mapping[str, float]],
    *,
    nk_enrichment: float = 1.0,
) -> pd.DataFrame:
    """Expected AREG % per population and condition, and the net over the unstimulated tube.

    Parameters
    ----------
    species, tissue
        Composition profile.
    areg_net
        ``{condition: {leaf label: planted net %}}`` (conditions of
        :data:`nkflow.datasets.simulate.CONDITIONS`).
    nk_enrichment
        As in :func:`nkflow.datasets.populations.composition`.

    Returns
    -------
    pandas.DataFrame
        ``condition, population, fraction`` (of all events), ``pct_areg_stim``,
        ``pct_areg_unstim``, ``planted_net`` (points).
    """
    weights, _ = _mixture(species, tissue, nk_enrichment)
    base = functional_rates(species, "unstim")["AREG"]
    rows = []
    for cond, nets in areg_net.items():
        rate = functional_rates(species, cond, dict(nets))["AREG"]
        for name, w in weights.items():
            total = w.sum()
            stim = 100.0 * float(w @ rate / total) if total else np.nan
            unstim = 100.0 * float(w @ base / total) if total else np.nan
            rows.append(dict(condition=cond, population=name, fraction=float(total),
                             pct_areg_stim=stim, pct_areg_unstim=unstim,
                             planted_net=stim - unstim))  # fmt: skip
    return pd.DataFrame(rows)


def simulate_score_counts(
    species: str,
    tissue: str,
    areg_net: Mapping[str, Mapping[str, float]],
    *,
    n_donors: int,
    n_events: int,
    nk_enrichment: float = 1.0,
    context: Mapping[str, str] | None = None,
    batch: str = "B1",
    random_state: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Counts and a metadata sheet: per donor one unstimulated tube and one per condition.

    Each condition's tube is paired with that donor's unstimulated tube.

    Parameters
    ----------
    species, tissue
        Composition profile.
    areg_net
        ``{condition: {leaf label: planted net %}}``; a condition mapped to ``{}`` plants
        nothing (a null condition whose only response is the ILC positive control).
    n_donors
        Donors (pairs per condition).
    n_events
        Events per tube (all events, not NK).
    nk_enrichment
        As in :func:`nkflow.datasets.populations.composition`.
    context
        Sheet context for every tube (``tissue_kind``, ``glucocorticoid``, ``treatment``).
    batch
        Batch id.
    random_state
        Seed.

    Returns
    -------
    counts, metadata, truth
        ``counts`` as :func:`nkflow.tl.count_positive` rows (AREG cut-off recorded as an
        FMO rule); ``metadata`` with ``stimulation`` = condition; ``truth`` as
        :func:`planted_nets`.
    """
    if n_donors < 1 or n_events < 1:
        raise ConfigError(f"n_donors and n_events must be >= 1; got {n_donors}, {n_events}")
    for cond in areg_net:
        if not is_stimulated_condition(cond):
            raise ConfigError("areg_net names conditions; 'unstim' is the baseline of all")
    rng = np.random.default_rng(random_state)
    weights, _ = _mixture(species, tissue, nk_enrichment)
    names = list(weights)
    frac = np.array([weights[n].sum() for n in names])
    trnk_leaves = set(population_leaves(species).get("trNK", ()))
    labels = labels_for(species)
    tr_w = np.array([lab in trnk_leaves for lab in labels], dtype=float)
    tubes = [("unstim", functional_rates(species, "unstim"))]
    tubes += [(c, functional_rates(species, c, dict(n))) for c, n in areg_net.items()]
    frames, meta = [], []
    donors = [f"d{i:04d}" for i in range(n_donors)]
    for cond, rates in tubes:
        probs = []
        for name in names:
            w = weights[name] / weights[name].sum()
            a, g = w @ rates["AREG"], w @ rates["IFN-g"]
            both = w @ (rates["AREG"] * rates["IFN-g"])
            probs.append([a - both, g - both, both, 1.0 - a - g + both])
        probs = np.clip(np.array(probs), 0.0, None)
        probs /= probs.sum(axis=1, keepdims=True)
        n = rng.binomial(n_events, frac, size=(n_donors, len(names)))
        draws = rng.multinomial(n, probs)  # (donors, populations, 4)
        cd107 = np.array([(weights[k] / weights[k].sum()) @ rates["CD107a"] for k in names])
        tr = np.array([(weights[k] / weights[k].sum()) @ tr_w for k in names])
        slug = cond.replace("/", "+")
        sids = [f"{d}_{slug}" for d in donors]
        frame = pd.DataFrame(
            {
                "sample_id": np.repeat(sids, len(names)),
                "population": np.tile(names, n_donors),
                "tissue": tissue,
                "batch": batch,
                "n_events": n.ravel(),
                "n_areg": (draws[..., 0] + draws[..., 2]).ravel(),
                "n_ifng": (draws[..., 1] + draws[..., 2]).ravel(),
                "n_nkg2d": pd.NA,
                "n_cd107a": rng.binomial(n, cd107).ravel(),
                "n_areg_only": draws[..., 0].ravel(),
                "n_ifng_only": draws[..., 1].ravel(),
                "n_areg_ifng": draws[..., 2].ravel(),
                "n_trnk": rng.binomial(n, tr).ravel(),
                "threshold_areg": 1.0,
                "areg_rule": "fmo_percentile:99.5",
                "areg_control_file": f"{tissue}_FMO_AREG.fcs",
            }
        )
        for col in COUNT_COLUMNS:
            frame[col] = frame[col].astype("Int64")
        frames.append(frame)
        meta.append(
            pd.DataFrame(
                {
                    "sample_id": sids,
                    "donor": donors,
                    "tissue": tissue,
                    "timepoint": "pre",
                    "stimulation": cond,
                    "role": "unstim" if cond == "unstim" else "stim",
                    "species": species,
                    "batch": batch,
                    **dict(context or {}),
                }
            )
        )
    truth = planted_nets(species, tissue, areg_net, nk_enrichment=nk_enrichment)
    return pd.concat(frames, ignore_index=True), pd.concat(meta, ignore_index=True), truth
