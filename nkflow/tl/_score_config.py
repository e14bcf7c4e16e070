"""Repair-score definitions: a frozen dataclass loaded from TOML (human and mouse defaults).

The defaults ship as package data (``nkflow/data/scoring_<species>.toml``) and are read with
:mod:`importlib.resources`, so they work from a wheel. A lab passes its own TOML with the same
keys; unknown keys are an error so that a typo never silently falls back to a default.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from ..exceptions import ConfigError
from ._score_names import STEROID_NAMES, TGF_BETA_NAMES, matches_condition

__all__ = ["SPECIES", "ScoringConfig", "load_scoring_config"]

SPECIES = ("human", "mouse")
_SECTIONS = {
    "markers": {"areg", "ifng", "nkg2d", "cd107a"},
    "thresholds": {"percentile", "confidence"},
    "flag": {
        "min_net",
        "min_areg_events",
        "min_events",
        "ri_cut",
        "require_positive_control",
        "require_fmo_threshold",
        "populations",
        "conditions",
    },
    "positive_control": {"population", "min_net", "min_areg_events", "min_events"},
    "residency": {"population", "in_score"},
    "ranking": {"enabled"},
    "context": {"glucocorticoid_conditions", "inhibitor_conditions"},
    "consistency": {"bright", "dim"},
    "design": {"timepoint_order"},
}


@dataclass(frozen=True)
class ScoringConfig:
    """Everything that defines the repair profile and its flags.

    Attributes mirror the TOML keys (``[flag] min_net`` becomes ``min_net``; the positive
    control keys are prefixed ``control_``, the ``[consistency]`` keys ``consistency_``;
    ``[context]`` and ``[design]`` keys keep their names). Percentages are percentage points.
    ``nkflow/data/scoring_human.toml`` explains each key; in short:

    Attributes
    ----------
    species
        ``"human"`` or ``"mouse"``.
    markers
        ``areg``, ``ifng``, ``nkg2d``, ``cd107a`` -> the canonical marker scored for each.
    percentile
        FMO percentile of a positivity cut-off scoring computes itself (50 < p < 100).
    confidence
        Coverage of every interval (Newcombe for stim - unstim, Wilson for proportions).
    min_net, min_areg_events, min_events
        An AREG-responsive flag needs ``AREG_net >= min_net``, that many AREG+ events in
        the stimulated tube and that many events in the population in both tubes.
    ri_cut
        Repair-biased: AREG-responsive and polarisation index above this (0 <= ri_cut < 1).
    require_positive_control
        No flag unless the batch's positive control responded.
    require_fmo_threshold
        No flag unless the AREG cut-off comes from an AREG FMO (not a fallback).
    populations
        Populations that may be flagged; ``"prefix:*"`` matches by prefix
        (``"metacluster:*"``). Others are scored, never flagged.
    conditions
        Stimulation conditions that may raise a flag (``"*"``: all); names match ignoring
        case, spaces, ``-`` and ``/``.
    control_population, control_min_net, control_min_areg_events, control_min_events
        The AREG+ positive-control population and what counts as its response.
    residency_population
        Gate whose fraction (from the unstimulated tube) is reported as residency.
    residency_in_score
        Also use that fraction in the ordering score.
    ranking
        Add the within-batch ordering score (z of AREG_net + z of RI), for ordering only.
    glucocorticoid_conditions
        Conditions that are glucocorticoids: their rows carry the pro-tumour reading. The
        steroid names of :data:`~nkflow.tl._score_names.STEROID_NAMES` always count, here
        and in the ``treatment`` text, whatever the list says; its other names also count
        in the treatment text (except ambiguous abbreviations such as ``dex``).
    inhibitor_conditions
        Conditions that contain an inhibitor of NK AREG (TGF-β1; Wang et al., EMBO J 2023):
        a flag there is unexpected and carries a note to check the stain and the culture.
    consistency_bright, consistency_dim
        Populations of the consistency read-out (bright expected to make at least as much
        AREG as dim); reported, never a flag rule.
    timepoint_order
        Order of timepoints, the first the baseline; ``()``: the natural order.
    source
        Where the definitions came from (a file path or the shipped defaults).

    Raises
    ------
    ConfigError
        On construction, when a value is out of range or of the wrong type.
    """

    species: str = "human"
    markers: dict[str, str] = field(
        default_factory=lambda: {
            "areg": "AREG",
            "ifng": "IFN-g",
            "nkg2d": "NKG2D",
            "cd107a": "CD107a",
        }
    )
    percentile: float = 99.5
    confidence: float = 0.95
    min_net: float = 1.0
    min_areg_events: int = 10
    min_events: int = 100
    ri_cut: float = 0.5
    require_positive_control: bool = True
    require_fmo_threshold: bool = True
    populations: tuple[str, ...] = ("NK", "metacluster:*")
    conditions: tuple[str, ...] = ("*",)
    control_population: str = "ILC"
    control_min_net: float = 1.0
    control_min_areg_events: int = 10
    control_min_events: int = 50
    residency_population: str = "trNK"
    residency_in_score: bool = False
    ranking: bool = True
    glucocorticoid_conditions: tuple[str, ...] = (*STEROID_NAMES, "dex", "glucocorticoid")
    inhibitor_conditions: tuple[str, ...] = TGF_BETA_NAMES
    consistency_bright: str = "CD56bright"
    consistency_dim: str = "CD56dim"
    timepoint_order: tuple[str, ...] = ()
    source: str = "defaults"

    def __post_init__(self) -> None:
        where = self.source
        if self.species not in SPECIES:
            raise ConfigError(f"{where}: species {self.species!r}; valid: {', '.join(SPECIES)}")
        if set(self.markers) != _SECTIONS["markers"]:
            raise ConfigError(
                f"{where}: [markers] keys {sorted(self.markers)}; "
                f"required: {sorted(_SECTIONS['markers'])}"
            )
        if not 50.0 < self.percentile < 100.0:
            raise ConfigError(f"{where}: percentile {self.percentile!r}; valid: 50 < p < 100")
        if not 0.5 < self.confidence < 1.0:
            raise ConfigError(f"{where}: confidence {self.confidence!r}; valid: 0.5 < c < 1")
        if not 0.0 <= self.ri_cut < 1.0:
            raise ConfigError(f"{where}: ri_cut {self.ri_cut!r}; valid: 0 <= ri_cut < 1")
        for name in ("min_net", "control_min_net"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{where}: {name} {getattr(self, name)!r}; valid: >= 0")
        for name in (
            "conditions",
            "glucocorticoid_conditions",
            "inhibitor_conditions",
            "timepoint_order",
        ):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where}: {name} {value!r}; valid: a list of strings")
        if not self.conditions:
            raise ConfigError(f'{where}: [flag] conditions is empty; use ["*"] for all')
        for name in (
            "min_areg_events",
            "min_events",
            "control_min_areg_events",
            "control_min_events",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{where}: {name} {value!r}; valid: an integer >= 0")

    def condition_may_flag(self, condition: str) -> bool:
        """Whether a stimulation condition may raise an AREG flag (``[flag] conditions``).

        Names match spelling-tolerantly (case, ``-``, ``/`` and spaces ignored: ``IL-15`` =
        ``il15``); ``"*"`` allows every condition.
        """
        return matches_condition(condition, self.conditions)

    def is_flaggable(self, population: str) -> bool:
        """Whether ``population`` may be flagged (listed, or matches ``prefix:*``)."""
        for pattern in self.populations:
            if pattern.endswith(":*"):
                if population.startswith(pattern[:-1]):
                    return True
            elif population == pattern:
                return True
        return False


def _from_mapping(data: dict[str, Any], source: str) -> ScoringConfig:
    unknown_top = set(data) - set(_SECTIONS) - {"species"}
    if unknown_top:
        raise ConfigError(
            f"{source}: unknown key(s) {sorted(unknown_top)}; valid: species, "
            + ", ".join(f"[{s}]" for s in _SECTIONS)
        )
    kwargs: dict[str, Any] = {"source": source}
    if "species" in data:
        kwargs["species"] = str(data["species"])
    for section, keys in _SECTIONS.items():
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{section}] must be a table")
        bad = set(table) - keys
        if bad:
            raise ConfigError(
                f"{source}: unknown key(s) {sorted(bad)} in [{section}]; valid: {sorted(keys)}"
            )
        if section == "markers":
            if table:
                base = ScoringConfig().markers
                kwargs["markers"] = {**base, **{k: str(v) for k, v in table.items()}}
        elif section == "thresholds" or section == "flag":
            for key, value in table.items():
                listed = key in ("populations", "conditions") and isinstance(value, list)
                kwargs[key] = tuple(value) if listed else value
        elif section == "context" or section == "design":
            for key, value in table.items():
                kwargs[key] = tuple(value) if isinstance(value, list) else value
        elif section == "consistency":
            for key, value in table.items():
                kwargs[f"consistency_{key}"] = str(value)
        elif section == "positive_control":
            for key, value in table.items():
                kwargs[f"control_{key}"] = value
        elif section == "residency":
            for key, value in table.items():
                kwargs[f"residency_{key}"] = value
        elif section == "ranking" and "enabled" in table:
            kwargs["ranking"] = bool(table["enabled"])
    known = {f.name for f in fields(ScoringConfig)}
    return ScoringConfig(**{k: v for k, v in kwargs.items() if k in known})


def load_scoring_config(config: str | Path | ScoringConfig | None = None) -> ScoringConfig:
    """Load repair-score definitions.

    Parameters
    ----------
    config
        ``None`` or ``"human"`` for the human defaults, ``"mouse"`` for the mouse defaults,
        a path to a lab's TOML file (same keys as the shipped defaults), or a
        :class:`ScoringConfig` (returned unchanged).

    Returns
    -------
    ScoringConfig
        The frozen definitions.

    Raises
    ------
    ConfigError
        The file is missing, not TOML, or has unknown keys or out-of-range values.
    """
    if isinstance(config, ScoringConfig):
        return config
    if config is None or (isinstance(config, str) and config in SPECIES):
        species = config or "human"
        resource = resources.files("nkflow").joinpath("data", f"scoring_{species}.toml")
        text = resource.read_text(encoding="utf-8")
        source = f"nkflow/data/scoring_{species}.toml"
    else:
        path = Path(config)
        if not path.is_file():
            raise ConfigError(
                f"{path}: scoring config not found; pass 'human', 'mouse' or a TOML file path"
            )
        text = path.read_text(encoding="utf-8")
        source = str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})") from exc
    return _from_mapping(data, source)
