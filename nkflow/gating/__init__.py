"""Gating: templates, data-driven thresholds with provenance, resolved gates, populations.

- :func:`load_template`, :func:`list_templates`, :func:`validate_template`,
  :func:`template_hash`: the TOML templates in ``gating/``.
- :func:`resolve_template`: a template against a batch's panel and technology -> the
  hierarchy applied (kept, substituted and skipped gates, populations not reportable);
  :func:`infer_species`, :func:`panel_technology` read the panel.
- :func:`gate` (one sample) and :func:`gate_batch` (FMO thresholds per tissue and batch,
  then one sample at a time).
- :func:`compare_thresholds`: drift of thresholds across batches.
- :mod:`nkflow.gating.gates`: resolved gate dataclasses (exported to GatingML 2.0).
- :func:`apply_gatingml`, :func:`export_gatingml`, :func:`apply_flowjo_workspace`:
  interoperability with GatingML 2.0 files and FlowJo workspaces through flowkit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import attach

if TYPE_CHECKING:  # at run time each module loads on first use (nkflow._lazy)
    from .apply import (
        BatchGatingResult,
        GatedCopy,
        borrow_unstim_thresholds,
        fmo_thresholds,
        gate,
        gate_batch,
        resolve_channel,
    )
    from .drift import compare_thresholds
    from .flowjo import WorkspaceResult, apply_flowjo_workspace, flowjo_counts
    from .gates import (
        BooleanGate,
        Dimension,
        Operand,
        PolygonGate,
        RectangleGate,
        evaluate_gates,
    )
    from .gatingml import apply_gatingml, export_gatingml, export_sample_gatingml, validate_gatingml
    from .resolve import (
        PanelView,
        ResolvedTemplate,
        infer_species,
        panel_technology,
        resolve_template,
    )
    from .stats import population_table
    from .template import Template, list_templates, load_template, template_hash, validate_template
    from .thresholds import (
        Threshold,
        fmo_threshold,
        gmm_threshold,
        mirror_threshold,
        quantile_threshold,
        valley_threshold,
    )

__all__ = [
    "BatchGatingResult",
    "BooleanGate",
    "Dimension",
    "GatedCopy",
    "Operand",
    "PanelView",
    "PolygonGate",
    "RectangleGate",
    "ResolvedTemplate",
    "Template",
    "Threshold",
    "WorkspaceResult",
    "apply_flowjo_workspace",
    "apply_gatingml",
    "borrow_unstim_thresholds",
    "compare_thresholds",
    "evaluate_gates",
    "export_gatingml",
    "export_sample_gatingml",
    "flowjo_counts",
    "fmo_threshold",
    "fmo_thresholds",
    "gate",
    "gate_batch",
    "gmm_threshold",
    "infer_species",
    "list_templates",
    "load_template",
    "mirror_threshold",
    "panel_technology",
    "population_table",
    "quantile_threshold",
    "resolve_channel",
    "resolve_template",
    "template_hash",
    "validate_gatingml",
    "validate_template",
    "valley_threshold",
]

__getattr__, __dir__ = attach(
    __name__,
    {
        "apply": [
            "BatchGatingResult",
            "GatedCopy",
            "borrow_unstim_thresholds",
            "fmo_thresholds",
            "gate",
            "gate_batch",
            "resolve_channel",
        ],
        "drift": ["compare_thresholds"],
        "flowjo": ["WorkspaceResult", "apply_flowjo_workspace", "flowjo_counts"],
        "gates": [
            "BooleanGate",
            "Dimension",
            "Operand",
            "PolygonGate",
            "RectangleGate",
            "evaluate_gates",
        ],
        "gatingml": [
            "apply_gatingml",
            "export_gatingml",
            "export_sample_gatingml",
            "validate_gatingml",
        ],
        "resolve": [
            "PanelView",
            "ResolvedTemplate",
            "infer_species",
            "panel_technology",
            "resolve_template",
        ],
        "stats": ["population_table"],
        "template": [
            "Template",
            "list_templates",
            "load_template",
            "template_hash",
            "validate_template",
        ],
        "thresholds": [
            "Threshold",
            "fmo_threshold",
            "gmm_threshold",
            "mirror_threshold",
            "quantile_threshold",
            "valley_threshold",
        ],
    },
)
