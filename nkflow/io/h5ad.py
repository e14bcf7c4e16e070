"""Containers to and from ``.h5ad``, with nkflow's records kept.

``uns["nkflow"]`` holds lists of records (thresholds, gates, QC steps) that h5ad cannot
store: ``adata.write_h5ad`` stops with "Can't implicitly convert non-string objects to
strings" once a sample is gated. :func:`write_h5ad` stores that record as one JSON string
(``uns["nkflow_json"]``) and :func:`read_h5ad` puts it back, so a gated, clustered or
scored container can be saved in a notebook and taken up again. Every other part of the
container (``X``, ``obs``, ``var``, ``layers``, ``obsm``, other ``uns`` keys) is written as
AnnData writes it, so scanpy and pytometry read the file as any other ``.h5ad``.

A file read by ``anndata.read_h5ad`` / ``scanpy.read_h5ad`` holds only
``uns["nkflow_json"]``: :func:`nkflow_uns` (called by the tools that read the records:
``gating.gate``, ``tl.count_positive``, ``tl.cluster``, ``pp.transform``) decodes it back
into ``uns["nkflow"]``, so such a container gives the same results as one read by
:func:`read_h5ad`.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np

from ..exceptions import ConfigError, FCSReadError
from .write import write_bytes_atomic

__all__ = ["JSON_KEY", "h5ad_bytes", "json_default", "nkflow_uns", "read_h5ad", "write_h5ad"]

#: the ``uns`` key that carries ``uns["nkflow"]`` as JSON in a written file
JSON_KEY = "nkflow_json"


def json_default(obj: Any) -> Any:
    """JSON form of the numpy values and paths found in nkflow's records."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def nkflow_uns(adata: ad.AnnData) -> dict[str, Any]:
    """The container's ``uns["nkflow"]``, decoded from ``uns["nkflow_json"]`` when needed.

    A file written by :func:`write_h5ad` and read by plain ``anndata.read_h5ad`` (what
    scanpy does) carries nkflow's records as one JSON string; they are put back as
    ``uns["nkflow"]`` (the container then equals one read by :func:`read_h5ad`). A view
    is not modified: the decoded records are returned without being stored.

    Parameters
    ----------
    adata
        Any container.

    Returns
    -------
    dict
        ``uns["nkflow"]`` (the stored dict itself when present), else the decoded
        ``uns["nkflow_json"]``, else an empty dict (not stored).

    Raises
    ------
    ConfigError
        ``uns["nkflow_json"]`` is not a JSON object.
    """
    uns = adata.uns
    record = uns.get("nkflow")
    if record is not None or JSON_KEY not in uns:
        return record if record is not None else {}
    text = uns[JSON_KEY]
    try:
        decoded = json.loads(str(text.item() if isinstance(text, np.ndarray) else text))
    except ValueError as exc:
        raise ConfigError(
            f"uns[{JSON_KEY!r}] of this AnnData is not nkflow's JSON record ({exc}); "
            "write the container with nk.io.write_h5ad"
        ) from None
    if not isinstance(decoded, dict):
        raise ConfigError(f"uns[{JSON_KEY!r}] of this AnnData is not a JSON object")
    if not adata.is_view:
        del uns[JSON_KEY]
        uns["nkflow"] = decoded
    return decoded


def _storable(adata: ad.AnnData) -> ad.AnnData:
    """A container sharing ``adata``'s arrays whose ``uns["nkflow"]`` is one JSON string."""
    source = adata.copy() if adata.is_view else adata
    uns = {k: v for k, v in source.uns.items() if k != "nkflow"}
    if "nkflow" in source.uns:
        uns[JSON_KEY] = json.dumps(source.uns["nkflow"], sort_keys=True, default=json_default)
    return ad.AnnData(
        X=source.X,
        obs=source.obs.copy(),
        var=source.var.copy(),
        uns=uns,
        obsm=dict(source.obsm),
        varm=dict(source.varm),
        layers=dict(source.layers),
        obsp=dict(source.obsp),
        varp=dict(source.varp),
    )


def h5ad_bytes(adata: ad.AnnData) -> bytes:
    """The container as h5ad bytes, built in memory, ``uns["nkflow"]`` as JSON.

    HDF5 writing straight to disk cannot fail cleanly: on a full disk h5py reports errors
    from object destructors and can crash the process. Built in memory, the bytes reach
    the disk through :func:`~nkflow.io.write.write_bytes_atomic` like every other file.

    Parameters
    ----------
    adata
        Any container; it is not modified.

    Returns
    -------
    bytes
    """
    import h5py
    from anndata.io import write_elem

    storable = _storable(adata)
    storable.strings_to_categoricals()
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        write_elem(handle, "/", storable)
    return buffer.getvalue()


def write_h5ad(adata: ad.AnnData, path: str | Path) -> Path:
    """Write a container to ``.h5ad`` with its nkflow records, atomically.

    Use it instead of ``adata.write_h5ad`` once a sample is gated: AnnData cannot store
    the lists of records in ``uns["nkflow"]``. The file appears whole or not at all.

    Parameters
    ----------
    adata
        The container (it is not modified).
    path
        Destination ``.h5ad`` file.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    OutputFolderError
        The file cannot be written (the message names it and why).
    """
    return write_bytes_atomic(Path(path), h5ad_bytes(adata))


def read_h5ad(path: str | Path) -> ad.AnnData:
    """Read an ``.h5ad`` file, restoring ``uns["nkflow"]`` written by :func:`write_h5ad`.

    Files written by AnnData itself read as they are.

    Parameters
    ----------
    path
        An ``.h5ad`` file.

    Returns
    -------
    anndata.AnnData

    Raises
    ------
    FCSReadError
        The file is missing or is not an ``.h5ad`` (HDF5) file; the message names it. It
        is an ``OSError``, as h5py's own error was.
    """
    try:
        adata = ad.read_h5ad(path)
    except FileNotFoundError:
        raise FCSReadError(path, "no such file") from None
    except OSError as exc:  # h5py: "file signature not found" and the like, without the path
        raise FCSReadError(path, f"not a readable .h5ad (HDF5) file ({exc})") from None
    if JSON_KEY in adata.uns:  # the JSON record is the one nkflow wrote
        adata.uns.pop("nkflow", None)
        nkflow_uns(adata)
    return adata
