"""Containers to and from ``.h5ad``, atomically, with nkflow's records kept.

nkflow stores its records in ``uns["nkflow"]`` in forms AnnData writes
(:mod:`nkflow.io.records`), so ``adata.write_h5ad`` / ``adata.write_zarr`` and
``anndata.read_h5ad`` work on any container nkflow hands over, and the tools read the
records back from such a file (:func:`~nkflow.io.records.nkflow_uns`).
:func:`write_h5ad` adds what a plain write lacks: the file appears whole or not at all,
a view is written as its events, and records a user stored as plain Python (lists of
dicts) are put in those forms first. Every other part of the container (``X``, ``obs``,
``var``, ``layers``, ``obsm``, other ``uns`` keys) is written as AnnData writes it, so
scanpy and pytometry read the file as any other ``.h5ad``.

A file may instead hold the record as one JSON string, ``uns["nkflow_json"]``: files
written by earlier versions, and a pipeline run's per-tube event files
(``h5ad_bytes(..., json_records=True)``: a gated tube's records are some 800 small h5ad
elements, which take ten times as long to write and read as the tube's NK events).
:func:`read_h5ad` and every tool that reads the records
(:func:`~nkflow.io.records.nkflow_uns`) read them too.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np

from ..exceptions import FCSReadError
from .records import JSON_KEY, from_native, nkflow_uns, restore_records, to_native
from .write import write_bytes_atomic

__all__ = ["JSON_KEY", "h5ad_bytes", "json_default", "nkflow_uns", "read_h5ad", "write_h5ad"]


def json_default(obj: Any) -> Any:
    """JSON form of the numpy values and paths found in nkflow's records."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def _storable(adata: ad.AnnData, json_records: bool) -> ad.AnnData:
    """A container sharing ``adata``'s arrays whose ``uns["nkflow"]`` AnnData can write."""
    source = adata.copy() if adata.is_view else adata
    uns = dict(source.uns)
    if "nkflow" in uns:
        record = from_native(uns.pop("nkflow"))
        if json_records:
            uns[JSON_KEY] = json.dumps(record, sort_keys=True, default=json_default)
        else:
            uns["nkflow"] = to_native(record)
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


def h5ad_bytes(adata: ad.AnnData, *, json_records: bool = False) -> bytes:
    """The container as h5ad bytes, built in memory.

    HDF5 writing straight to disk cannot fail cleanly: on a full disk h5py reports errors
    from object destructors and can crash the process. Built in memory, the bytes reach
    the disk through :func:`~nkflow.io.write.write_bytes_atomic` like every other file.

    Parameters
    ----------
    adata
        Any container; it is not modified.
    json_records
        Store ``uns["nkflow"]`` as one JSON string, ``uns["nkflow_json"]``, instead of in
        h5ad's own forms: far quicker to write and read, for files nkflow reads back
        itself; plain ``anndata.read_h5ad`` then gives the string, which the tools decode.

    Returns
    -------
    bytes
    """
    import h5py
    from anndata.io import write_elem

    storable = _storable(adata, json_records)
    storable.strings_to_categoricals()
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        write_elem(handle, "/", storable)
    return buffer.getvalue()


def write_h5ad(adata: ad.AnnData, path: str | Path) -> Path:
    """Write a container to ``.h5ad`` with its nkflow records, atomically.

    ``adata.write_h5ad`` writes the same file; this one appears whole or not at all, and
    a view or records a user stored as plain Python are written too.

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
    """Read an ``.h5ad`` file, restoring ``uns["nkflow"]`` kept as one JSON string.

    Files written by AnnData itself or by :func:`write_h5ad` read as they are; one that
    holds ``uns["nkflow_json"]`` (an earlier version's file, a run's per-tube events)
    gets ``uns["nkflow"]`` back from it.

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
        restore_records(adata)
    return adata
