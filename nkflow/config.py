"""Run configuration: frozen dataclasses, loaded from TOML, overridden by CLI flags.

A configuration is plain data. ``load_config`` reads a TOML file (every key optional;
unknown sections or keys are an error that lists the valid ones), ``replace_values``
applies dotted overrides such as ``{"clustering.n_metaclusters": 12}``, and
``config_to_toml`` writes the effective configuration back, so a run's ``config.toml``
reproduces it.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .exceptions import ConfigError, GatingTemplateError

__all__ = [
    "ClusteringConfig",
    "CompensationConfig",
    "ExecutionConfig",
    "GatingConfig",
    "MetadataConfig",
    "QCConfig",
    "RunConfig",
    "ScoringConfig",
    "TransformConfig",
    "config_to_dict",
    "config_to_toml",
    "load_config",
    "replace_values",
]


@dataclass(frozen=True)
class MetadataConfig:
    """How the metadata sheet is read.

    Attributes
    ----------
    neutralise_formulas
        Sheet values (and sample ids taken from file names) that a spreadsheet would run
        as formulas (starting with ``=``, ``+``, ``-``, ``@``; plain numbers excepted) or
        that hold control characters are refused (false, the default); true prefixes them
        with ``'`` instead and warns (see :func:`nkflow.io.read_metadata`).
    """

    neutralise_formulas: bool = False


@dataclass(frozen=True)
class QCConfig:
    """Acquisition quality control.

    Attributes
    ----------
    enabled
        Run QC at all.
    time
        Remove unstable stretches of acquisition (flow rate and signal over Time).
    margins
        Remove saturated (margin) events.
    nonfinite
        Events holding NaN/Inf values: ``"raise"`` (default) fails the file, ``"drop"``
        drops those events with a warning (``nonfinite`` of :func:`nkflow.io.read_fcs`).
        Applies whether or not QC is enabled.
    """

    enabled: bool = True
    time: bool = True
    margins: bool = True
    nonfinite: str = "raise"

    def __post_init__(self) -> None:
        _check_section("qc", self)


@dataclass(frozen=True)
class CompensationConfig:
    """Compensation source.

    Attributes
    ----------
    matrix
        ``"file"`` (default: what each file's technology implies: its ``$SPILLOVER`` for
        conventional flow and spectral files, none with the reason recorded for mass
        cytometry and compensated exports, none with a warning for a flow file without
        one), ``"none"``, or a path to a matrix file.
    """

    matrix: str = "file"


@dataclass(frozen=True)
class TransformConfig:
    """Transform of fluorescence channels.

    Attributes
    ----------
    method
        ``"auto"`` (default: each file's technology decides, arcsinh for mass cytometry
        and logicle otherwise), ``"logicle"`` or ``"arcsinh"``.
    cofactor
        Arcsinh cofactor; 0 (default) takes the technology's (5 for mass cytometry, 150
        otherwise).
    T, W, M, A
        Logicle parameters (Parks, Roederer & Moore 2006).
    estimate_w
        Estimate W per channel from the negative data.
    """

    method: str = "auto"
    cofactor: float = 0.0
    T: float = 262144.0
    W: float = 0.5
    M: float = 4.5
    A: float = 0.0
    estimate_w: bool = False

    def __post_init__(self) -> None:
        _check_section("transform", self)
        # the logicle parameters constrain each other (Parks, Roederer & Moore 2006)
        if not self.W <= self.M / 2:
            raise ConfigError(f"transform.W = {self.W!r}; valid: 0 <= W <= M/2 = {self.M / 2}")
        if not -self.W <= self.A <= self.M - 2 * self.W:
            raise ConfigError(
                f"transform.A = {self.A!r}; valid: -W <= A <= M - 2W, here "
                f"{-self.W} <= A <= {self.M - 2 * self.W}"
            )


@dataclass(frozen=True)
class GatingConfig:
    """Gating template and threshold rules.

    Attributes
    ----------
    template
        A template name from ``gating/``, a path to a template, GatingML or FlowJo file,
        or ``"auto"`` (by species and tissue).
    fmo_percentile
        Percentile of the FMO control used as the positivity threshold.
    min_events
        Populations with fewer events are flagged.
    bootstrap
        Bootstrap resamples for threshold confidence intervals (0 disables them).
    max_threshold_drift
        Largest tolerated shift of a threshold between batches (transformed units).
    overrides
        A manual threshold overrides file (TOML, :mod:`nkflow.gating.overrides`); ``""``
        for none. In a config file a relative path is taken from the file's folder and
        the file is read when the config is loaded; the path is kept absolute.
    """

    template: str = "auto"
    fmo_percentile: float = 99.5
    min_events: int = 100
    bootstrap: int = 200
    max_threshold_drift: float = 0.1
    overrides: str = ""

    def __post_init__(self) -> None:
        _check_section("gating", self)


@dataclass(frozen=True)
class ClusteringConfig:
    """FlowSOM-style clustering of gated NK cells.

    Attributes
    ----------
    enabled
        Cluster at all.
    population
        The gated population to cluster.
    markers
        Markers to cluster on; empty means the panel's phenotype markers.
    xdim, ydim
        SOM grid size.
    n_metaclusters
        Number of consensus metaclusters, at most ``xdim * ydim`` (they merge SOM nodes).
    per_sample_cap
        Largest number of cells any sample contributes to training.
    rlen
        SOM training passes.
    alpha_start, alpha_end
        SOM learning rate at the start and end of training (FlowSOM: 0.05, 0.01).
    batch_size
        Largest SOM mini-batch (cells per update).
    min_updates_per_pass
        Smallest number of SOM updates per pass (smaller pools get smaller batches).
    min_batch_size
        Smallest batch that minimum may split a pass into.
    som_init
        SOM codebook start: ``"random"`` (FlowSOM) or ``"pca"``.
    linkage
        Linkage inside the consensus resamples: average, complete, single or ward.
    final_linkage
        Linkage on ``1 - consensus``: average, complete or single.
    n_resamples
        Consensus resampling rounds (FlowSOM: 100).
    resample_fraction
        Fraction of SOM nodes drawn per round, in (0, 1] (FlowSOM: 0.9).
    """

    enabled: bool = True
    population: str = "NK"
    markers: tuple[str, ...] = ()
    xdim: int = 10
    ydim: int = 10
    n_metaclusters: int = 10
    per_sample_cap: int = 20000
    rlen: int = 10
    alpha_start: float = 0.05
    alpha_end: float = 0.01
    batch_size: int = 2048
    min_updates_per_pass: int = 128
    min_batch_size: int = 64
    som_init: str = "random"
    linkage: str = "average"
    final_linkage: str = "average"
    n_resamples: int = 100
    resample_fraction: float = 0.9

    def __post_init__(self) -> None:
        _check_section("clustering", self)
        # a metacluster merges SOM nodes: more metaclusters than nodes cannot be made
        n_nodes = self.xdim * self.ydim
        if self.n_metaclusters > n_nodes:
            raise ConfigError(
                f"clustering.n_metaclusters = {self.n_metaclusters!r}; valid: at most "
                f"clustering.xdim x ydim = {self.xdim} x {self.ydim} = {n_nodes} SOM nodes"
            )


@dataclass(frozen=True)
class ScoringConfig:
    """Repair scoring.

    Attributes
    ----------
    enabled
        Score at all.
    definitions
        Path to a scoring TOML; empty means the species default shipped with nkflow.
    """

    enabled: bool = True
    definitions: str = ""


@dataclass(frozen=True)
class ExecutionConfig:
    """Where and how per-sample work runs.

    Attributes
    ----------
    workers
        Local worker processes; 0 (the default) means one per core, 1 runs in-process.
    scheduler
        Address of a Dask distributed scheduler; empty runs locally.
    random_state
        Seed for every random step (subsampling, SOM, bootstrap).
    """

    workers: int = 0
    scheduler: str = ""
    random_state: int = 0

    def __post_init__(self) -> None:
        _check_section("execution", self)


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs besides its inputs and output folder.

    Each section is the TOML table of the same name (:func:`load_config`).

    Attributes
    ----------
    panel
        Panel file (channel -> marker) passed to :func:`nkflow.io.read_fcs`; ``""``: the
        files' own ``$PnS`` labels and the alias table.
    metadata, qc, compensation, transform, gating, clustering, scoring, execution
        The sections: :class:`MetadataConfig`, :class:`QCConfig`,
        :class:`CompensationConfig`, :class:`TransformConfig`, :class:`GatingConfig`,
        :class:`ClusteringConfig`, :class:`ScoringConfig`, :class:`ExecutionConfig`.

    Raises
    ------
    ConfigError
        On construction, when a value is out of range or not one of its choices.
    """

    panel: str = ""
    metadata: MetadataConfig = field(default_factory=MetadataConfig)
    qc: QCConfig = field(default_factory=QCConfig)
    compensation: CompensationConfig = field(default_factory=CompensationConfig)
    transform: TransformConfig = field(default_factory=TransformConfig)
    gating: GatingConfig = field(default_factory=GatingConfig)
    clustering: ClusteringConfig = field(default_factory=ClusteringConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)

    def __post_init__(self) -> None:
        _validate(self)


#: Every numeric setting's valid range, checked in one place (:func:`_check_section`)
#: whenever a section is built: from TOML, from CLI flags or in Python. Each entry:
#: whole number or not, lowest value, whether the lowest is allowed, highest value.
_RANGES: dict[str, tuple[bool, float, bool, float]] = {
    "transform.cofactor": (False, 0, True, math.inf),
    "transform.T": (False, 0, False, math.inf),
    "transform.W": (False, 0, True, math.inf),
    "transform.M": (False, 0, False, math.inf),
    "transform.A": (False, -math.inf, False, math.inf),
    "gating.fmo_percentile": (False, 50, True, 100),
    "gating.min_events": (True, 0, True, math.inf),
    "gating.bootstrap": (True, 0, True, math.inf),
    "gating.max_threshold_drift": (False, 0, False, math.inf),
    "clustering.xdim": (True, 1, True, math.inf),
    "clustering.ydim": (True, 1, True, math.inf),
    "clustering.n_metaclusters": (True, 1, True, math.inf),
    "clustering.per_sample_cap": (True, 1, True, math.inf),
    "clustering.rlen": (True, 1, True, math.inf),
    "clustering.batch_size": (True, 1, True, math.inf),
    "clustering.min_updates_per_pass": (True, 1, True, math.inf),
    "clustering.min_batch_size": (True, 1, True, math.inf),
    "clustering.n_resamples": (True, 1, True, math.inf),
    "clustering.alpha_start": (False, 0, False, 1),
    "clustering.alpha_end": (False, 0, False, 1),
    "clustering.resample_fraction": (False, 0, False, 1),
    "execution.workers": (True, 0, True, math.inf),
    # numpy's legacy seeding (sklearn's check_random_state) takes 0 .. 2**32 - 1
    "execution.random_state": (True, 0, True, 2**32 - 1),
}

_CHOICES: dict[str, tuple[str, ...]] = {
    "transform.method": ("auto", "logicle", "arcsinh"),
    "qc.nonfinite": ("raise", "drop"),
    "clustering.som_init": ("random", "pca"),
    "clustering.linkage": ("average", "complete", "single", "ward"),
    "clustering.final_linkage": ("average", "complete", "single"),
}

#: Upper bounds that are excluded (every other upper bound is allowed).
_OPEN_ABOVE = frozenset({"gating.fmo_percentile"})


def _check_section(section: str, obj: Any) -> None:
    """Raise :class:`ConfigError` for the first value of ``obj`` outside its range.

    The message names the dotted key, the value given and the valid range or choices.
    """
    for f in fields(obj):
        key, value = f"{section}.{f.name}", getattr(obj, f.name)
        if key in _CHOICES and value not in _CHOICES[key]:
            raise ConfigError(f"{key} = {value!r}; valid: {', '.join(_CHOICES[key])}")
        if key not in _RANGES:
            continue
        whole, low, low_ok, high = _RANGES[key]
        kinds = int if whole else int | float
        ok = isinstance(value, kinds) and not isinstance(value, bool)
        ok = ok and not math.isnan(value) and (value >= low if low_ok else value > low)
        ok = ok and (value < high if key in _OPEN_ABOVE else value <= high)
        if ok and not whole and high == math.inf:
            ok = math.isfinite(value)
        if not ok:
            raise ConfigError(f"{key} = {value!r}; valid: {_range_text(key)}")


def _range_text(key: str) -> str:
    whole, low, low_ok, high = _RANGES[key]
    what = "a whole number" if whole else "a number" if high != math.inf else "a finite number"
    below = "<" if key in _OPEN_ABOVE else "<="
    if low == -math.inf:
        return f"{what} (finite)"
    text = f"{what} {'>=' if low_ok else '>'} {_num(low)}"
    if high != math.inf:
        text = f"{what}, {_num(low)} {'<=' if low_ok else '<'} value {below} {_num(high)}"
    if key == "transform.cofactor":
        text += " (0: by technology, 5 for mass cytometry, 150 otherwise)"
    return text


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def _validate(cfg: RunConfig) -> None:
    if not cfg.compensation.matrix.strip():
        raise ConfigError("compensation.matrix is empty; valid: 'file', 'none' or a matrix path")


def _section_types() -> dict[str, type]:
    return {
        f.name: f.type if isinstance(f.type, type) else globals()[f.type]
        for f in fields(RunConfig)
        if f.name != "panel"
    }


def _coerce(section_cls: type, key: str, value: Any, where: str) -> Any:
    default = getattr(section_cls(), key)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}{key} = {value!r}; expected true or false")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}{key} = {value!r}; expected a whole number")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}{key} = {value!r}; expected a number")
        return float(value)
    if isinstance(default, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}{key} = {value!r}; expected a list of strings")
        return tuple(value)
    if not isinstance(value, str):
        raise ConfigError(f"{where}{key} = {value!r}; expected a string")
    return value


def _from_mapping(data: dict[str, Any], where: str = "") -> RunConfig:
    sections = _section_types()
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        if name == "panel":
            if not isinstance(value, str):
                raise ConfigError(f"{where}panel = {value!r}; expected a path string")
            kwargs["panel"] = value
            continue
        if name not in sections:
            valid = ", ".join(["panel", *sections])
            raise ConfigError(f"{where}unknown section [{name}]; valid: {valid}")
        cls = sections[name]
        if not isinstance(value, dict):
            raise ConfigError(f"{where}[{name}] must be a table of keys")
        valid_keys = [f.name for f in fields(cls)]
        section_kwargs = {}
        for key, item in value.items():
            if key not in valid_keys:
                raise ConfigError(
                    f"{where}unknown key {name}.{key}; valid: {', '.join(valid_keys)}"
                )
            section_kwargs[key] = _coerce(cls, key, item, f"{where}{name}.")
        try:
            kwargs[name] = cls(**section_kwargs)
        except ConfigError as exc:  # a value out of range: name the file too
            raise ConfigError(f"{where}{exc}") from None
    try:
        return RunConfig(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{where}{exc}") from None


def load_config(path: str | Path | None = None) -> RunConfig:
    """Load a run configuration from TOML; ``None`` gives the defaults.

    Parameters
    ----------
    path
        A TOML file. Every section and key is optional.

    Returns
    -------
    RunConfig
        The validated configuration.

    Raises
    ------
    ConfigError
        When the file cannot be read or a value is invalid (the message names the file,
        the key and the valid choices).
    """
    if path is None:
        return RunConfig()
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config file ({exc.strerror or exc})") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: not valid TOML ({exc})") from exc
    gating = data.get("gating")
    named = gating.get("overrides") if isinstance(gating, dict) else None
    if isinstance(gating, dict) and isinstance(named, str) and named:
        data["gating"] = {**gating, "overrides": _overrides_file(p, named)}
    return _from_mapping(data, where=f"{p}: ")


def _overrides_file(config_path: Path, value: str) -> str:
    """``[gating] overrides`` of a config file: relative to the file's folder, read now.

    Returns the absolute path (what the run's ``config.toml`` then records), so the run
    finds the file from any working directory.
    """
    from .gating.overrides import load_overrides  # numpy: only when a file is named

    path = (config_path.parent / Path(value).expanduser()).resolve()
    try:
        load_overrides(path)
    except GatingTemplateError as exc:
        raise ConfigError(f"{config_path}: [gating] overrides = {value!r}: {exc}") from exc
    return str(path)


def replace_values(config: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Return a copy of ``config`` with dotted keys replaced (``None`` values are skipped).

    Parameters
    ----------
    config
        The base configuration.
    overrides
        ``{"section.key": value}`` or ``{"panel": path}``.

    Returns
    -------
    RunConfig
        A new, validated configuration.
    """
    data = config_to_dict(config)
    for dotted, value in overrides.items():
        if value is None:
            continue
        if dotted == "panel":
            data["panel"] = value
            continue
        section, _, key = dotted.partition(".")
        if section not in data or not isinstance(data[section], dict) or not key:
            raise ConfigError(f"unknown setting {dotted!r}")
        data[section][key] = value
    return _from_mapping(data)


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    """The configuration as nested plain dicts (tuples become lists)."""

    def plain(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj):
            return {f.name: plain(getattr(obj, f.name)) for f in fields(obj)}
        if isinstance(obj, tuple):
            return list(obj)
        return obj

    return plain(config)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def config_to_toml(config: RunConfig) -> str:
    """Serialise the configuration as TOML that :func:`load_config` reads back."""
    data = config_to_dict(config)
    lines = ["# nkflow run configuration (the effective values of this run)", ""]
    lines.append(f"panel = {_toml_value(data.pop('panel'))}")
    for section, values in data.items():
        lines += ["", f"[{section}]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"
