"""nkflow: flow-cytometry analysis of NK-cell repair phenotypes.

Use it as ``import nkflow as nk``. The subpackages follow scanpy's layout:

- :mod:`nkflow.io` reads FCS files, panels and metadata sheets;
- :mod:`nkflow.pp` quality control, compensation and transforms;
- :mod:`nkflow.gating` gating templates and data-driven thresholds;
- :mod:`nkflow.models` scikit-learn-style estimators (SOM, metaclustering);
- :mod:`nkflow.tl` clustering, annotation and repair scoring over the container;
- :mod:`nkflow.pl` plots (functions return matplotlib figures).
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import exceptions
from .exceptions import NkflowError

__all__ = ["NkflowError", "__version__", "exceptions"]
