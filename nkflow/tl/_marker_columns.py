"""A table of marker intensities put in the order a fitted clustering reads its columns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from nkflow.exceptions import ConfigError

__all__ = ["in_marker_order"]


def in_marker_order(X: Any, markers: Sequence[str], caller: str) -> Any:
    """``X`` as an array in ``markers`` order: a DataFrame by its column names.

    A DataFrame's columns are taken by name, whatever their order (the columns were once
    read by position, so a reordered table silently got other metaclusters); any other
    input is returned as it is, for the caller's own checks.

    Parameters
    ----------
    X
        Cells x markers: an array, or a DataFrame whose columns are the markers' names.
    markers
        The clustered markers, in the order the clustering was fit on.
    caller
        Named first in the error.

    Returns
    -------
    numpy.ndarray or the input
        The DataFrame's columns in ``markers`` order as an array; other inputs unchanged.

    Raises
    ------
    ConfigError
        A DataFrame lacks one of ``markers``.
    """
    if not isinstance(X, pd.DataFrame):
        return X
    missing = [m for m in markers if m not in X.columns]
    if missing:
        raise ConfigError(
            f"{caller}: the DataFrame has no column {', '.join(map(repr, missing))}; its "
            "columns are taken by name, marker names as var['marker'] gives them (not "
            f"channels): the clustered markers are {', '.join(markers)}; or call "
            "result.assign(adata) to label a sample's cells"
        )
    return np.asarray(X.loc[:, list(markers)])
