"""``run(input, out)``: the one path the CLI and notebooks share.

Data flow (ARCHITECTURE.md): validate the sheet and the batch -> FMO thresholds per
tissue and batch -> every sample (read, QC, compensate, transform, gate, count) on the
chosen executor, unstimulated tubes before their stimulated partners -> cluster the
pooled NK cells and map every sample -> score -> report. Samples that fail are listed
with their reason in ``status`` and the rest of the batch goes on.
"""

from __future__ import annotations

from .gate import gate_files
from .results import Results
from .run import default_out_dir, run

__all__ = ["Results", "default_out_dir", "gate_files", "run"]
