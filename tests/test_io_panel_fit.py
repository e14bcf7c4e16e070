"""A user panel that does not fit its files is said so, never silently ignored.

Panel rows naming no channel of a file and marker names the alias table does not know:
``read_fcs`` warns (:class:`PanelWarning`), ``check_batch`` / ``nkflow check`` list them as
non-fatal notes, only for rows no file of the batch has. Markers resolve as before.
"""

from __future__ import annotations

import pytest

from nkflow.io.panel_fit import fit_panel


@pytest.mark.parametrize(
    ("layouts", "unmatched"),
    [
        ([], {}),  # nothing to match against: no channel is said missing
        ([(["A-A"], ["CD56"])], {"B-A": []}),
        ([(["A-A"], [""]), (["B-A"], [""])], {}),  # each row in some file
        ([(["A-A", "b_a"], [""]), (["B A"], [""])], {"B-A": ["b_a", "B A"]}),  # near misses
    ],
)
def test_fit_panel_unmatched(layouts: list, unmatched: dict[str, list[str]]) -> None:
    fit = fit_panel({"A-A": "CD56", "B-A": "CD16"}, layouts)
    assert fit.unmatched == unmatched
    assert bool(fit) == bool(unmatched)


@pytest.mark.parametrize(
    ("marker", "closest"),
    [
        ("CD5six", "CD56 or CD57"),  # a tie of difflib's ratio and of the common start
        ("Perforn", "Perforin"),
        ("Granzym B", "Granzyme-B"),
        ("CD1O3", "CD103"),
        ("NKp64", "NKp44 or NKp46"),
        ("PD-1", ""),  # a marker of its own: nothing close
        ("TIGIT", ""),
    ],
)
def test_fit_panel_unknown_markers(marker: str, closest: str) -> None:
    fit = fit_panel({"A-A": marker, "B-A": "CD56", "C-A": ""}, [(["A-A", "B-A", "C-A"], [])])
    assert fit.unknown == {marker: closest}
    assert not fit.unmatched
