"""``run(input, out)``: the one path the CLI and notebooks share.

Data flow (ARCHITECTURE.md): validate the sheet and the batch -> FMO thresholds per
tissue and batch -> every sample (read, QC, compensate, transform, gate, count) on the
chosen executor, unstimulated tubes before their stimulated partners -> cluster the
pooled NK cells and map every sample -> score -> report. Samples that fail are listed
with their reason in ``status`` and the rest of the batch goes on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import attach

# run shares its module's name, so it cannot be lazy (nkflow._lazy)
from .run import default_out_dir, run

if TYPE_CHECKING:  # at run time each module loads on first use (nkflow._lazy)
    from .gate import gate_files
    from .results import Results

__all__ = ["Results", "default_out_dir", "gate_files", "run"]

__getattr__, __dir__ = attach(
    __name__,
    {
        "gate": ["gate_files"],
        "results": ["Results"],
    },
)
