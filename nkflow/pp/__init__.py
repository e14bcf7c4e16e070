"""nkflow.pp: preprocessing of one sample container.

Order in a pipeline: :func:`qc` (margins, Time stability) on the raw linear data,
:func:`compensate`, then :func:`transform` (logicle or arcsinh). Every step records
its parameters in ``uns["nkflow"]``. :func:`subsample` and :func:`pooled_subsample`
draw events for clustering.
"""

from __future__ import annotations

# Not lazy (nkflow._lazy): qc, compensate, subsample and transform share their module's
# name, and those four modules define every public name here.
from .compensate import compensate, compensate_array, read_spillover_matrix, spillover_from_adata
from .qc import apply_qc, qc, qc_events, qc_margins, qc_time
from .subsample import pooled_subsample, subsample
from .transform import (
    arcsinh,
    arcsinh_inverse,
    estimate_logicle_w,
    from_linear,
    logicle,
    logicle_inverse,
    to_linear,
    transform,
)

__all__ = [
    "apply_qc",
    "arcsinh",
    "arcsinh_inverse",
    "compensate",
    "compensate_array",
    "estimate_logicle_w",
    "from_linear",
    "logicle",
    "logicle_inverse",
    "pooled_subsample",
    "qc",
    "qc_events",
    "qc_margins",
    "qc_time",
    "read_spillover_matrix",
    "spillover_from_adata",
    "subsample",
    "to_linear",
    "transform",
]
