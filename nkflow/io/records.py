"""nkflow's records in ``uns["nkflow"]`` kept in forms AnnData writes to h5ad and zarr.

Every step records what it did in ``uns["nkflow"]`` (sample, FCS keywords, compensation,
transform, QC, gates, thresholds, clustering). Python's natural form of those records -
lists of dicts, tuples, ``None`` inside lists - cannot be written by ``adata.write_h5ad``
("Can't implicitly convert non-string objects to strings"), so each writer stores its
record through :func:`to_native`, which gives only what AnnData writes and reads back:

- dicts stay dicts, their keys escaped where h5ad/zarr would split or refuse them or
  where they would read as a list item (a slash, a backslash or ``%`` in it; ``""``,
  ``"."``, ``".."``, ``"[0]"``: the key becomes ``"%"`` + its percent-encoding);
- ``None``, ``str``, ``bool``, ``int`` and ``float`` stay as they are (numpy scalars become
  Python ones);
- a list or tuple of strings, of booleans or of numbers, or a rectangular nesting of them,
  becomes a list (tuples become lists; numbers become floats when any is a float): it is
  written as an array;
- a list of dicts with the same keys and one scalar type per key becomes a
  :class:`~pandas.DataFrame` (the thresholds table), one row per dict;
- any other list becomes a dict ``{"[0]": ..., "[1]": ...}`` of its items.

:func:`from_native` turns any of these back into plain Python records - whether it gets
the form just stored, the arrays and sorted dicts ``anndata.read_h5ad`` /
``read_zarr`` give back, or the lists of dicts nkflow stored before. :func:`nkflow_uns`
is the one reader the tools use; it also restores a record kept as one JSON string in
``uns["nkflow_json"]`` (files written by earlier versions of :func:`nkflow.io.write_h5ad`,
and a pipeline run's per-tube event files) in those forms.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any
from urllib.parse import quote, unquote

import numpy as np
import pandas as pd

from ..exceptions import ConfigError

__all__ = [
    "JSON_KEY",
    "decoded_at",
    "from_native",
    "nkflow_record",
    "nkflow_uns",
    "restore_records",
    "set_record",
    "stored_uns",
    "to_native",
]

#: the ``uns`` key of the record as one JSON string (earlier versions' files, a run's tubes)
JSON_KEY = "nkflow_json"

_ITEM = re.compile(r"\[(\d+)\]\Z")
_PLAIN = (str, int, float, bool)
_UNSAFE_KEYS = {"", ".", ".."}


#: a key h5ad or zarr would split or refuse, or one that would read as a list item
_ESCAPED = re.compile(r"[%/\\]|\A\[\d+\]\Z")


def _key(key: Any, where: str) -> str:
    if not isinstance(key, str):
        raise TypeError(f"{where}: key {key!r} is not a string; h5ad stores string keys only")
    if key in _UNSAFE_KEYS or _ESCAPED.search(key):
        return "%" + quote(key, safe="")
    return key


def _unkey(key: str) -> str:
    return unquote(key[1:]) if key.startswith("%") else key


def _leaf_kind(value: Any) -> str | None:
    """``"b"``, ``"n"`` or ``"s"`` for a bool, number or string; None for anything else."""
    if isinstance(value, bool | np.bool_):
        return "b"
    if isinstance(value, int | float | np.integer | np.floating):
        return "n"
    return "s" if isinstance(value, str) else None


def _shape(value: Any) -> tuple[tuple[int, ...], set[str]] | None:
    """Shape and leaf kinds of a rectangular nesting of lists of scalars (None if not)."""
    if isinstance(value, np.ndarray) and value.dtype.kind != "O":
        value = value.tolist()
    if isinstance(value, list | tuple | np.ndarray):
        parts = [_shape(v) for v in value]
        if not parts:
            return (0,), set()
        known = [p for p in parts if p is not None]
        if len(known) < len(parts) or len({p[0] for p in known}) != 1:
            return None
        return (len(parts), *known[0][0]), set().union(*(p[1] for p in known))
    kind = _leaf_kind(value)
    return None if kind is None else ((), {kind})


def _leaves(value: Any, as_float: bool) -> Any:
    if isinstance(value, list | tuple | np.ndarray):
        return [_leaves(v, as_float) for v in value]
    value = value.item() if isinstance(value, np.generic) else value
    return float(value) if as_float else value


def _column(values: list[Any]) -> np.ndarray | None:
    """One DataFrame column of the record dicts' values (None: not one scalar type)."""
    kinds = {_leaf_kind(v) for v in values}
    if len(kinds) != 1 or None in kinds:
        return None
    kind = kinds.pop()
    if kind == "s":
        return np.array(values, dtype=object)
    if kind == "b":
        return np.array(values, dtype=bool)
    floats = any(isinstance(v, float | np.floating) for v in values)
    return np.array(values, dtype=np.float64 if floats else np.int64)


def _table(rows: list[Mapping[str, Any]]) -> pd.DataFrame | None:
    """The dicts as a DataFrame, or None when they do not make one losslessly."""
    keys = list(rows[0])
    if not keys or any(list(r) != keys for r in rows):
        return None
    if any(not isinstance(k, str) or _key(k, "") != k for k in keys):
        return None
    columns = {k: _column([r[k] for r in rows]) for k in keys}
    if any(c is None for c in columns.values()):
        return None
    return pd.DataFrame(columns)


def _sequence(items: list[Any] | tuple[Any, ...], where: str) -> Any:
    shape = _shape(items)
    if shape is not None and len(shape[1]) <= 1:
        numbers = shape[1] == {"n"}
        return _leaves(items, numbers and _has_float(items))
    if items and all(isinstance(x, Mapping) for x in items):
        table = _table(list(items))
        if table is not None:
            return table
    return {f"[{i}]": to_native(x, f"{where}[{i}]") for i, x in enumerate(items)}


def _has_float(value: Any) -> bool:
    if isinstance(value, list | tuple | np.ndarray):
        return any(_has_float(v) for v in value)
    return isinstance(value, float | np.floating)


def to_native(value: Any, where: str = "uns['nkflow']") -> Any:
    """A record in the forms AnnData writes to h5ad and zarr (see the module notes).

    Parameters
    ----------
    value
        A record of dicts, lists, tuples, strings, numbers, booleans, ``None``, numpy
        scalars and arrays, paths and DataFrames (taken as lists of row dicts).
    where
        Where the record goes, for the error message.

    Returns
    -------
    Any
        The record to store; :func:`from_native` gives ``value`` back (tuples as lists).

    Raises
    ------
    TypeError
        A value of another type, or a key that is not a string (the message says where).
    """
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Mapping):  # plain values as they are (most FCS keywords)
        return {
            _key(k, where): v if v is None or type(v) in _PLAIN else to_native(v, f"{where}[{k!r}]")
            for k, v in value.items()
        }
    if isinstance(value, pd.DataFrame):
        return _sequence(from_native(value), where)
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biuf":
            return value
        return _sequence(value.tolist(), where)
    if isinstance(value, list | tuple):
        return _sequence(value, where)
    raise TypeError(f"{where}: a {type(value).__name__} cannot be stored in an .h5ad file")


def _items(value: Mapping[str, Any]) -> list[Any] | None:
    """The items of a stored list (keys ``"[0]"`` .. ``"[n-1]"``), else None."""
    index = {}
    if not value or not str(next(iter(value))).startswith("["):
        return None
    for k in value:
        m = _ITEM.match(k) if isinstance(k, str) else None
        if m is None:
            return None
        index[int(m.group(1))] = k
    if not index or sorted(index) != list(range(len(index))):
        return None
    return [from_native(value[index[i]]) for i in range(len(index))]


def from_native(value: Any) -> Any:
    """The plain Python record of a stored one: dicts, lists, strings, numbers, None.

    Accepts what :func:`to_native` gives, what ``anndata.read_h5ad`` / ``read_zarr`` read
    back from it (arrays, numpy scalars, sorted dicts) and the plain records earlier
    versions stored. Applied to its own output it changes nothing.

    Parameters
    ----------
    value
        A stored record.

    Returns
    -------
    Any
        Dicts, lists (arrays become lists, DataFrames lists of row dicts), str, bool,
        int, float and None.
    """
    if value is None or type(value) in _PLAIN:
        return value
    if isinstance(value, Mapping):
        items = _items(value)
        if items is not None:
            return items
        return {
            _unkey(k): v if v is None or type(v) in _PLAIN else from_native(v)
            for k, v in value.items()
        }
    if isinstance(value, pd.DataFrame):
        columns = {str(c): _column_values(s) for c, s in value.items()}
        return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]
    if isinstance(value, np.ndarray):
        return value.tolist() if value.dtype.kind != "O" else [from_native(v) for v in value]
    if isinstance(value, list | tuple):
        if all(v is None or type(v) in _PLAIN for v in value):
            return list(value)
        return [from_native(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is pd.NA:
        return None
    return value


def _column_values(column: pd.Series) -> list[Any]:
    values = column.tolist()  # Python scalars, except in object columns
    return values if column.dtype.kind in "biuf" else [from_native(v) for v in values]


def _restore_json(adata: Any) -> Any:
    """``uns["nkflow"]`` of a container holding the record as one JSON string.

    The record is decoded and, unless ``adata`` is a view, stored as ``uns["nkflow"]`` in
    the forms of :func:`to_native` (the JSON string goes).
    """
    uns = adata.uns
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
    native = to_native(decoded)
    if not getattr(adata, "is_view", False):
        del uns[JSON_KEY]
        uns["nkflow"] = native
    return native


def _stored(adata: Any) -> Any:
    uns = getattr(adata, "uns", None)
    if not isinstance(uns, Mapping):
        return None
    record = uns.get("nkflow")
    if record is None and JSON_KEY in uns:
        return _restore_json(adata)
    return record


def restore_records(adata: Any) -> None:
    """Put back ``uns["nkflow"]`` from ``uns["nkflow_json"]`` when only the string is there.

    What a reader of a file written as one JSON string needs before it reads records the
    usual way; unlike :func:`nkflow_uns` nothing is decoded (that walk of every FCS keyword
    cost a run's 54 tube reads 0.7 s).

    Parameters
    ----------
    adata
        Any container (or any object).

    Raises
    ------
    ConfigError
        ``uns["nkflow_json"]`` is not a JSON object.
    """
    _stored(adata)


def nkflow_uns(adata: Any) -> dict[str, Any]:
    """The container's nkflow records as plain Python: the one reader the tools use.

    It reads ``uns["nkflow"]`` as nkflow stores it, as ``anndata.read_h5ad`` /
    ``read_zarr`` give it back, as earlier versions stored it (lists of dicts), and as
    one JSON string in ``uns["nkflow_json"]``, which is then stored as ``uns["nkflow"]``
    unless ``adata`` is a view.

    Parameters
    ----------
    adata
        Any container (or any object; without ``uns`` the result is empty).

    Returns
    -------
    dict
        A decoded copy (:func:`from_native`): changing it does not change the container;
        an empty dict when there is no record.

    Raises
    ------
    ConfigError
        ``uns["nkflow_json"]`` is not a JSON object.
    """
    record = from_native(_stored(adata))
    return record if isinstance(record, dict) else {}


def nkflow_record(adata: Any, key: str, *path: str) -> Any:
    """One of the container's nkflow records as plain Python, read as :func:`nkflow_uns`.

    Parameters
    ----------
    adata
        Any container (or any object).
    key
        The record's name (``"sample"``, ``"technology"``, ...).
    *path
        Keys of dicts inside it to go down before decoding (``"gating", "unset"``): only
        that part is decoded, for a reader called once per gate or channel.

    Returns
    -------
    Any
        The decoded record (a copy), or None when the container has none.
    """
    return decoded_at(_stored(adata), key, *path)


def decoded_at(record: Any, *path: str) -> Any:
    """The part of a stored record at ``path`` (dict keys, as given), decoded alone.

    Parameters
    ----------
    record
        A record as stored (:func:`to_native`), read back, or plain.
    *path
        Dict keys to go down, unescaped (``"params", "FL1/A"``).

    Returns
    -------
    Any
        :func:`from_native` of that part, or None when a key is missing.
    """
    for name in path:
        if not isinstance(record, Mapping):
            return None
        stored = record.get(_key(name, "decoded_at"))
        record = record.get(name) if stored is None else stored  # a plain record's own key
        if record is None:
            return None
    return from_native(record)


def stored_uns(adata: Any) -> dict[str, Any]:
    """The container's stored ``uns["nkflow"]`` dict, created when absent.

    For writers: a record kept as one JSON string is restored first, so what they add
    joins it. Values put here go through :func:`to_native` (or :func:`set_record`).

    Parameters
    ----------
    adata
        A container.

    Returns
    -------
    dict
        ``adata.uns["nkflow"]`` itself.
    """
    record = _stored(adata)
    if not isinstance(record, dict):
        record = dict(record) if isinstance(record, Mapping) else {}
        adata.uns["nkflow"] = record
    return record


def set_record(adata: Any, key: str, value: Any) -> None:
    """Store one record as ``uns["nkflow"][key]`` in the forms of :func:`to_native`.

    Parameters
    ----------
    adata
        A container.
    key
        The record's name (``"compensation"``, ``"gating"``, ...).
    value
        The record (plain Python).

    Raises
    ------
    TypeError
        The record holds a value h5ad cannot store (the message says where).
    """
    stored_uns(adata)[key] = to_native(value, f"uns['nkflow'][{key!r}]")
