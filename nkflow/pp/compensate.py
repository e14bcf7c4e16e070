"""Spillover compensation: from the file's ``$SPILLOVER``/``$SPILL``, a user matrix, or none.

What ``matrix="file"`` means follows the technology :func:`nkflow.io.read_fcs` recorded in
``uns["nkflow"]["technology"]`` (:mod:`nkflow.io.technology`); it is read here, not
guessed again: conventional flow and unmixed spectral files use their spillover keyword
(flow without one: :class:`~nkflow.exceptions.MissingSpilloverWarning`, left
uncompensated); mass cytometry and compensated exports are left uncompensated with the
reason recorded; raw spectral detector data raise
:class:`~nkflow.exceptions.UnmixingRequiredError` and already transformed values
:class:`~nkflow.exceptions.TransformedDataError`, whatever ``matrix`` says.

Compensated events are ``raw @ inv(S)`` over the matrix's channels, where ``S`` is the
spillover matrix (rows: the fluorochrome's detector, columns: where it spills; unit
diagonal), the convention of the FCS standard, FlowJo and flowkit. The product is
computed in float64 (in cache-sized row blocks) and stored as float32: a float32
product loses absolute precision exactly where compensation cancels signal, near zero.
"""

from __future__ import annotations

import csv
import logging
import shlex
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from nkflow._threads import run_row_ranges, single_thread_blas
from nkflow.exceptions import (
    ChannelNotFoundError,
    ConfigError,
    MissingSpilloverWarning,
)
from nkflow.io.records import nkflow_record, set_record
from nkflow.io.technology import technology_of

__all__ = [
    "check_matrix_setting",
    "compensate",
    "compensate_array",
    "read_spillover_matrix",
    "spillover_from_adata",
]

log = logging.getLogger(__name__)

#: Rows processed at a time (keeps the float64 intermediate in cache).
CHUNK_ROWS = 2048
_DIAG_TOL = 1e-6


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _split(line: str) -> list[str]:
    if "\t" in line:
        parts = line.split("\t")
    elif "," in line:
        parts = next(csv.reader([line]))
    elif ";" in line:
        parts = line.split(";")
    else:
        try:
            parts = shlex.split(line)
        except ValueError:
            parts = line.split()
    return [p.strip().strip('"').strip("'").strip() for p in parts]


def read_spillover_matrix(path: str | Path) -> pd.DataFrame:
    """Read a spillover matrix file into a square DataFrame (channels x channels).

    Accepts CSV, TSV or whitespace-separated text with a header row of channel
    names, with or without a leading row-label column, and FlowJo's text export
    (a title line and a ``<`` ``>`` line before the header, CR line endings).

    Parameters
    ----------
    path
        The matrix file.

    Returns
    -------
    pandas.DataFrame
        float64 spillover values; index and columns are the channel names (columns
        order), rows re-ordered to match the columns when labelled.

    Raises
    ------
    ConfigError
        The file is missing or is not a square matrix with a unit diagonal.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as err:
        raise ConfigError(f"{p}: cannot read spillover matrix file ({err})") from err
    rows = [_split(line) for line in text.splitlines() if line.strip()]
    header: list[str] | None = None
    body: list[list[str]] = []
    for r in rows:
        cells = [t for t in r if t != ""]
        if header is None:
            names = [t for t in cells if not _is_number(t)]
            if len(cells) >= 2 and len(names) == len(cells) and not set(cells) <= {"<", ">"}:
                header = cells
            continue
        if cells and any(_is_number(t) for t in cells):
            body.append(cells)
    if header is None or not body:
        raise ConfigError(f"{p}: no header row of channel names followed by numeric rows")
    n = len(body)
    labelled = all(not _is_number(r[0]) for r in body)
    if len(header) == n + 1 and labelled:  # a corner label such as "Channel"
        header = header[1:]
    if len(header) != n:
        raise ConfigError(f"{p}: header names {len(header)} channels but there are {n} rows")
    labels: list[str] = []
    values = []
    for i, r in enumerate(body):
        if len(r) == n + 1 and not _is_number(r[0]):
            labels.append(r[0])
            r = r[1:]
        if len(r) != n or not all(_is_number(t) for t in r):
            raise ConfigError(f"{p}: row {i + 1} has {len(r)} values, expected {n} numbers")
        values.append([float(t) for t in r])
    df = pd.DataFrame(np.array(values, dtype=np.float64), index=labels or header, columns=header)
    if labels:
        if sorted(labels) != sorted(header):
            raise ConfigError(f"{p}: row labels {labels} differ from header channels {header}")
        df = df.loc[header]
    _validate(df, str(p))
    return df


def check_matrix_setting(matrix: str | Path) -> None:
    """Check a run's ``compensation.matrix`` once, before any sample is read.

    A matrix file that cannot be parsed would otherwise fail every sample with the same
    message; ``"file"`` and ``"none"`` need no check.

    Parameters
    ----------
    matrix
        ``"file"``, ``"none"`` or the path of a matrix file.

    Raises
    ------
    ConfigError
        The path is not a file, or the file is not a usable spillover matrix (the message
        names the file and what is wrong).
    """
    if str(matrix) in ("file", "none"):
        return
    if not Path(matrix).is_file():
        raise ConfigError(
            f"compensation matrix {str(matrix)!r} is neither 'file', 'none' "
            "nor an existing matrix file"
        )
    read_spillover_matrix(matrix)


def _validate(df: pd.DataFrame, where: str) -> None:
    m = df.to_numpy(dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ConfigError(f"{where}: spillover matrix must be square, got shape {m.shape}")
    if list(map(str, df.index)) != list(map(str, df.columns)):
        raise ConfigError(f"{where}: spillover row and column channels differ")
    if len(set(map(str, df.columns))) != len(df.columns):
        raise ConfigError(f"{where}: duplicate channels in spillover matrix {list(df.columns)}")
    if not np.all(np.isfinite(m)):
        raise ConfigError(f"{where}: spillover matrix has non-finite values")
    diag = np.diag(m)
    bad = [str(c) for c, v in zip(df.columns, diag, strict=True) if abs(v - 1.0) > _DIAG_TOL]
    if bad:
        raise ConfigError(f"{where}: spillover diagonal must be 1; not 1 for {bad}")
    if np.linalg.cond(m) > 1e12:
        raise ConfigError(f"{where}: spillover matrix is singular and cannot be inverted")


def spillover_from_adata(adata: AnnData) -> pd.DataFrame | None:
    """The file's spillover matrix from ``uns["nkflow"]["spillover"]``, or None.

    :func:`nkflow.io.read_fcs` stores there the ``$SPILLOVER`` (or ``$SPILL``) keyword
    of the file, its channel references mapped to ``$PnN`` names.

    Parameters
    ----------
    adata
        A container from :func:`nkflow.io.read_fcs`.

    Returns
    -------
    DataFrame or None
        Square float64 matrix, index and columns the ``$PnN`` channels it covers (rows:
        the spilling channel, as in the keyword); None when the file had no usable
        spillover.
    """
    spill = nkflow_record(adata, "spillover")
    if not spill:
        return None
    chans = [str(c) for c in spill["channels"]]
    return pd.DataFrame(np.asarray(spill["matrix"], dtype=np.float64), index=chans, columns=chans)


def compensate_array(
    values: np.ndarray,
    spillover: np.ndarray | pd.DataFrame,
    *,
    columns: Sequence[int] | None = None,
    out: np.ndarray | None = None,
    n_threads: int | None = None,
) -> np.ndarray:
    """Compensate an event array: ``values[:, columns] @ inv(spillover)``.

    Parameters
    ----------
    values
        Events x channels, linear raw values.
    spillover
        Square spillover matrix (unit diagonal) for the channels in ``columns``.
    columns
        Column index of each matrix channel in ``values``; default all columns (the
        matrix must then be channels x channels of ``values``).
    out
        Optional output array (same shape as ``values``); may be ``values`` itself.
    n_threads
        Threads sharing the rows (default: the process default, see
        :func:`nkflow._threads.resolve_threads`). The result does not depend on it.

    Returns
    -------
    numpy.ndarray
        Compensated events; other columns copied unchanged. Same dtype as ``out``
        (float32 for float32 input when ``out`` is None, else float64).

    Raises
    ------
    ConfigError
        ``values`` is not 2-D, or the matrix shape does not match ``columns``.
    """
    vals = np.asarray(values)
    if vals.ndim != 2:
        raise ConfigError(f"values must be 2-D (events x channels), got shape {vals.shape}")
    s = np.asarray(spillover, dtype=np.float64)
    cols = np.arange(vals.shape[1]) if columns is None else np.asarray(columns, dtype=np.intp)
    if s.shape != (cols.size, cols.size):
        raise ConfigError(f"spillover matrix shape {s.shape} does not match {cols.size} channels")
    inv = np.linalg.inv(s)
    if out is None:
        out = np.empty(vals.shape, dtype=np.float32 if vals.dtype == np.float32 else np.float64)
    other = _column_runs(np.setdiff1d(np.arange(vals.shape[1]), cols))
    first = int(cols[0]) if cols.size else 0
    span = slice(first, first + cols.size)
    contiguous = cols.size > 0 and np.array_equal(cols, np.arange(span.start, span.stop))
    # Casting whole rows to float64 is one contiguous pass; casting a column subset runs
    # one short inner loop per row (several times slower), so whole rows are cast unless
    # the matrix covers few of many channels. BLAS reads a column range of the float64
    # rows through their row stride; the products are the same as from a compact copy.
    whole_rows = cols.size > 0 and 4 * cols.size >= vals.shape[1]

    def work(lo: int, hi: int) -> None:
        rows = max(1, min(CHUNK_ROWS, hi - lo))
        stage = np.empty((rows, vals.shape[1] if whole_rows else cols.size))
        block = np.empty((rows, cols.size)) if whole_rows and not contiguous else None
        prod = np.empty((rows, cols.size))
        for start in range(lo, hi, CHUNK_ROWS):
            stop = min(hi, start + CHUNK_ROWS)
            m = stop - start
            if out is not vals:
                for sl in other:
                    out[start:stop, sl] = vals[start:stop, sl]
            if not cols.size:
                continue
            if whole_rows:
                np.copyto(stage[:m], vals[start:stop], casting="unsafe")
                if contiguous:
                    src = stage[:m, span]
                else:
                    src = np.take(stage[:m], cols, axis=1, out=block[:m])  # type: ignore[index]
            else:
                part = vals[start:stop, span] if contiguous else vals[start:stop][:, cols]
                np.copyto(stage[:m], part, casting="unsafe")
                src = stage[:m]
            np.matmul(src, inv, out=prod[:m])
            if contiguous:
                np.copyto(out[start:stop, span], prod[:m], casting="unsafe")
            else:
                out[start:stop, cols] = prod[:m]

    with single_thread_blas():
        run_row_ranges(vals.shape[0], work, n_threads=n_threads)
    return out


def _column_runs(columns: np.ndarray) -> list[slice]:
    """Sorted column indices as slices of consecutive runs (basic indexing is cheaper)."""
    cols = np.asarray(columns, dtype=np.intp)
    if cols.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(cols) != 1) + 1
    return [slice(int(r[0]), int(r[-1]) + 1) for r in np.split(cols, breaks)]


def _sample_label(adata: AnnData) -> str:
    sample = nkflow_record(adata, "sample") or {}
    return str(sample.get("path") or sample.get("sample_id") or "<sample>")


def _resolve(adata: AnnData, matrix: Any, label: str) -> tuple[pd.DataFrame | None, str, str]:
    """The matrix to apply (None: none), its source and the reason when none is applied."""
    if isinstance(matrix, pd.DataFrame):
        df = matrix.copy()
        df.index = df.index.map(str)
        df.columns = df.columns.map(str)
        if list(df.index) != list(df.columns) and sorted(df.index) == sorted(df.columns):
            df = df.loc[list(df.columns)]
        _validate(df, f"{label}: user DataFrame")
        return df, "user:DataFrame", ""
    if isinstance(matrix, str) and matrix == "none":
        return None, "none", "compensation switched off (matrix='none')"
    if isinstance(matrix, str) and matrix == "file":
        return _from_file(adata, label)
    if isinstance(matrix, str | Path):
        p = Path(matrix)
        if not p.is_file():
            raise ConfigError(
                f"{label}: compensation matrix {str(matrix)!r} is neither 'file', 'none' "
                "nor an existing matrix file"
            )
        return read_spillover_matrix(p), f"user:{p}", ""
    raise ConfigError(
        f"{label}: matrix must be 'file', 'none', a path or a DataFrame, "
        f"got {type(matrix).__name__}"
    )


def _from_file(adata: AnnData, label: str) -> tuple[pd.DataFrame | None, str, str]:
    """``matrix="file"``: the file's spillover, or none as its recorded technology implies."""
    tech = technology_of(adata)
    if tech.compensation == "none":
        return None, "none", tech.compensation_reason
    df = spillover_from_adata(adata)
    if df is not None:
        _validate(df, f"{label}: file spillover")
        return df, "file", ""
    if tech.kind == "flow":
        reason = (
            "conventional flow file without a $SPILLOVER/$SPILL/SPILL keyword: left "
            "uncompensated; pass a matrix file if its fluorochromes spill"
        )
        warnings.warn(f"{label}: {reason}", MissingSpilloverWarning, stacklevel=4)
        return None, "none", reason
    return None, "none", tech.compensation_reason or f"{tech.label}: no spillover keyword"


def compensate(
    adata: AnnData,
    *,
    matrix: str | Path | pd.DataFrame = "file",
    inplace: bool = True,
    n_threads: int | None = None,
) -> AnnData | None:
    """Compensate spillover; store ``layers["compensated"]`` and set ``X`` to it.

    Parameters
    ----------
    adata
        Sample container with raw linear float32 ``X`` (from :func:`nkflow.io.read_fcs`).
    matrix
        ``"file"`` (default: what the file's recorded technology implies, see below),
        ``"none"`` (copy raw values), a path to a matrix file (see
        :func:`read_spillover_matrix`) or a DataFrame (spillover, channels as index and
        columns). With ``"file"``: the file's ``$SPILLOVER``/``$SPILL`` for conventional
        flow and unmixed spectral files; none, with the reason recorded, for mass
        cytometry, compensated exports (``Comp-``/``FJComp-`` channels, whose carried-over
        spillover is not applied again) and spectral files without a spillover keyword.
    inplace
        Modify ``adata`` and return None; else return a compensated copy.
    n_threads
        Threads sharing the events (default: every core, or the worker's share inside
        :class:`nkflow.parallel.SampleExecutor`; ``NKFLOW_NUM_THREADS`` overrides).

    Returns
    -------
    AnnData or None
        The compensated copy when ``inplace=False``.

    Raises
    ------
    UnmixingRequiredError
        The file holds raw spectral detector channels (technology ``raw_spectral``); they
        must be unmixed (SpectroFlo or another unmixing tool) before analysis.
    TransformedDataError
        The file's values are already transformed (technology ``transformed_export``,
        e.g. a flowCore export after ``transform()``): whatever ``matrix`` says, nkflow
        does not compensate them; the message names the evidence and what to export.
    ConfigError
        An invalid matrix, or the sample is already compensated or transformed.
    ChannelNotFoundError
        A matrix channel is not in the sample (the message lists the sample's channels).

    Warns
    -----
    MissingSpilloverWarning
        ``"file"`` on a conventional flow file without a spillover keyword; the events are
        left uncompensated and the reason is recorded.

    Notes
    -----
    ``X`` and ``layers["compensated"]`` share one array after this step (memory);
    :func:`nkflow.pp.transform` writes a new ``X``. With ``inplace=True`` a float32
    ``X`` is compensated in its own buffer, so an outside reference to the raw ``X``
    array sees compensated values afterwards (as with other in-place steps). Records
    ``uns["nkflow"]["compensation"] = {source, channels, matrix, reason}``; ``reason``
    says why no matrix was applied (``""`` when one was).
    """
    label = _sample_label(adata)
    done = nkflow_record(adata, "compensation")  # only the records read are decoded
    if done is not None or "compensated" in adata.layers:
        done = done or {}
        how = done.get("source") or done.get("reason") or "compensated layer present"
        raise ConfigError(f"{label}: already compensated ({how}); not applied twice")
    if nkflow_record(adata, "transform") is not None:
        raise ConfigError(
            f"{label}: X is already transformed; compensate linear data before transform"
        )
    refused = technology_of(adata).refusal(label)
    if refused is not None:
        raise refused
    df, source, reason = _resolve(adata, matrix, label)
    names = [str(c) for c in adata.var_names]
    col = {c: i for i, c in enumerate(names)}
    channels: list[str] = []
    if df is not None:
        channels = [str(c) for c in df.columns]
        missing = [c for c in channels if c not in col]
        if missing:
            raise ChannelNotFoundError(", ".join(missing), names, source=label)
    if not inplace:
        adata = adata.copy()
    raw = adata.X
    reuse = (
        isinstance(raw, np.ndarray)
        and not isinstance(raw, np.memmap)
        and raw.dtype == np.float32
        and raw.flags.c_contiguous
        and raw.flags.writeable
        and not adata.is_view
    )
    if df is None:
        comp = raw if reuse else np.array(raw, dtype=np.float32, order="C", copy=True)
    else:
        # the raw buffer is overwritten block by block (each block is read first):
        # no second events-sized array, and no page faults on a fresh one
        comp = raw if reuse else np.empty(raw.shape, dtype=np.float32)
        compensate_array(
            np.asarray(raw),
            df.to_numpy(),
            columns=[col[c] for c in channels],
            out=comp,
            n_threads=n_threads,
        )
    adata.layers["compensated"] = comp
    adata.X = comp
    set_record(
        adata,
        "compensation",
        {
            "source": source,
            "channels": channels,
            "matrix": [] if df is None else df.to_numpy().tolist(),
            "reason": reason,
        },
    )
    log.info("%s: compensated %d channel(s) (source %s)", label, len(channels), source)
    if reason:
        log.info("%s: no compensation: %s", label, reason)
    return None if inplace else adata
