"""nkflow: flow-cytometry analysis of NK-cell repair phenotypes.

Use it as ``import nkflow as nk``:

>>> res = nk.run("sample_data/", "results/")          # doctest: +SKIP
>>> res.populations, res.scores, res.flags             # doctest: +SKIP

The subpackages follow scanpy's layout:

- :mod:`nkflow.io` reads FCS files, panels and metadata sheets;
- :mod:`nkflow.pp` quality control, compensation and transforms;
- :mod:`nkflow.gating` gating templates, data-driven thresholds, GatingML/FlowJo interop;
- :mod:`nkflow.models` scikit-learn-style estimators (SOM, consensus metaclustering);
- :mod:`nkflow.tl` clustering, annotation, counting and repair scoring;
- :mod:`nkflow.pl` plots (functions return matplotlib figures);
- :mod:`nkflow.datasets` the simulator and the sample data.

AREG+ NK is reported in human NK (not mouse) and may be pro-tumour after glucocorticoids or in
tumour: every scored output says so, and a flag is a hypothesis to test.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from . import exceptions
from ._lazy import attach
from ._version import __version__
from .config import RunConfig, load_config
from .exceptions import NkflowError

if TYPE_CHECKING:  # at run time each sub-package loads on first use (nkflow._lazy)
    from . import datasets, gating, io, models, pl, pp, tl
    from .io import read_batch, read_fcs
    from .pipeline import Results, run

__all__ = [
    "NkflowError",
    "Results",
    "RunConfig",
    "__version__",
    "datasets",
    "exceptions",
    "gating",
    "io",
    "load_config",
    "models",
    "pl",
    "pp",
    "read_batch",
    "read_fcs",
    "run",
    "tl",
]

# a library configures no output: without a handler, Python's last-resort handler would
# print every WARNING record to a notebook's stderr (the CLI installs its own handlers)
logging.getLogger(__name__).addHandler(logging.NullHandler())

__getattr__, __dir__ = attach(
    __name__,
    {"io": ["read_batch", "read_fcs"], "pipeline": ["Results", "run"]},
    submodules=["datasets", "gating", "io", "models", "pipeline", "pl", "pp", "report", "tl"],
)
