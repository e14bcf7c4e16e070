"""The channel a gate reads: a template names markers, a file names channels."""

from __future__ import annotations

from typing import Any

from ..io.fcs import channel_for, var_markers

__all__ = ["resolve_channel"]


def resolve_channel(adata: Any, name: str) -> str:
    """``$PnN`` channel of a marker or channel name (``var_names`` first, then markers).

    Parameters
    ----------
    adata
        One sample container (``var_names`` are ``$PnN``, ``var["marker"]`` if present).
    name
        A channel name, a canonical marker or an alias (``"NCAM1"`` finds ``CD56``).

    Returns
    -------
    str
        The channel: ``name`` itself when it is a channel, else the one channel whose
        marker is exactly ``name``, else :func:`nkflow.io.channel_for`'s answer.

    Raises
    ------
    ChannelNotFoundError
        No channel carries ``name``; the message lists the sample's channels and markers.
    PanelError
        The marker is on several channels (:func:`nkflow.io.channel_for`).
    """
    if name in adata.var_names:
        return str(name)
    exact = list(adata.var_names[var_markers(adata).to_numpy() == name])
    if len(exact) == 1:
        return str(exact[0])
    return channel_for(adata, name)
