from __future__ import annotations

import io
import warnings

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from test_score_simulation import simulate_counts

from nkflow.pl.score import repair_profile
from nkflow.tl.caveats import SHORT_CAVEAT
from nkflow.tl.score import score


@pytest.fixture(scope="module")
def result():
    counts, meta, _ = simulate_counts(3, seed=1)
    return score(counts, meta)


def test_repair_profile_one_tube(result):
    fig = repair_profile(result, sample_id="d0_stim")
    assert isinstance(fig, Figure)
    axes = fig.axes
    assert len(axes) == 4
    flaggable = result.scores.query("sample_id == 'd0_stim' and flaggable")
    labels = [t.get_text() for t in axes[0].get_yticklabels()]
    assert labels == list(flaggable["population"])
    assert any(SHORT_CAVEAT in t.get_text() for t in fig.texts)
    # filled markers = flagged populations, hollow = the rest
    filled, hollow = (c.get_offsets().shape[0] for c in axes[0].collections[-2:])
    assert filled == int(flaggable["areg_responsive"].sum())
    assert filled + hollow == len(flaggable)
    fig.savefig(io.BytesIO(), format="png")  # renders without error


def test_repair_profile_several_tubes_and_chosen_populations(result):
    fig = repair_profile(result.scores, populations=["NK", "ILC", "CD56bright"])
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["NK", "ILC", "CD56bright"]
    assert fig.legends and len(fig.legends[0].get_texts()) == 3


def test_repair_profile_errors_name_valid_choices(result):
    with pytest.raises(ValueError, match="valid: d0_stim"):
        repair_profile(result, sample_id="nope")
    with pytest.raises(ValueError, match="not in the scores"):
        repair_profile(result, populations=["Treg"])


def test_plot_argument_errors_are_nkflows_and_list_each_valid_id_once(result) -> None:
    """A wrong sample_id raised a plain ValueError listing each id once per population."""
    from nkflow.exceptions import ConfigError

    with pytest.raises(ConfigError, match="not scored; valid: ") as err:
        repair_profile(result, sample_id="nope")
    valid = str(err.value).split("valid: ", 1)[1].split(", ")
    assert len(valid) == len(set(valid))


@pytest.mark.parametrize(("recorded", "lines"), [({"min_net": 2.0, "ri_cut": 0.7}, (2.0, 0.7)),
                                                 (None, (None, 0.5))])  # fmt: skip
def test_repair_profile_takes_a_runs_results_and_its_recorded_cuts(
    result, tmp_path, recorded, lines
):
    """``nk.pl.repair_profile(res, condition=...)`` on ``nk.run``'s Results raised
    AttributeError: 'RunConfig' object has no attribute 'min_net'."""
    import json

    import pandas as pd

    from nkflow.config import RunConfig
    from nkflow.pipeline.results import Results

    if recorded is not None:
        (tmp_path / "provenance.json").write_text(json.dumps({"scoring": recorded}))
    run = Results(tmp_path, RunConfig(), pd.DataFrame(), tables={"scores": result.scores})
    fig = repair_profile(run, sample_id="d0_stim")
    min_net, ri_cut = lines
    net_lines = [ln.get_xdata()[0] for ln in fig.axes[0].lines]
    assert (min_net in net_lines) if min_net is not None else net_lines == [0.0]
    assert [ln.get_xdata()[0] for ln in fig.axes[1].lines] == [ri_cut]


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def _assert_legend_clear(fig) -> None:
    """The tubes' legend lies inside the figure and off every panel and panel title."""
    fig.draw_without_rendering()
    legend = fig.legends[0].get_window_extent()
    assert fig.bbox.x0 <= legend.x0 and legend.x1 <= fig.bbox.x1
    for ax in fig.axes:
        assert not _overlaps(legend, ax.get_window_extent())
        assert not _overlaps(legend, ax.title.get_window_extent()), ax.get_title()


@pytest.fixture(scope="module")
def no_areg():
    """Three tubes scored on a panel without AREG, CD107a, NKG2D or a trNK gate."""
    counts, meta, _ = simulate_counts(3, seed=2)
    missing = ["n_areg", "n_areg_only", "n_areg_ifng", "n_ifng", "n_ifng_only", "n_cd107a",
               "n_nkg2d", "n_trnk"]  # fmt: skip
    counts[missing] = pd.NA
    counts["threshold_areg"] = np.nan
    counts["areg_rule"] = ""
    counts["areg_channel"] = ""
    # sample ids as long as a real file's
    ids = {s: f"Gates_PTLG0{s}_Unstim_Control_long_name" for s in meta["sample_id"]}
    counts["sample_id"] = counts["sample_id"].map(ids)
    meta["sample_id"] = meta["sample_id"].map(ids)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return score(counts, meta)


def test_repair_profile_without_areg_says_why_each_panel_is_empty(no_areg):
    """Four empty panels were drawn without a word, and the legend covered the 4th title."""
    assert no_areg.flags["failed_rules"].str.contains("AREG_NOT_IN_PANEL").all()
    fig = repair_profile(no_areg)
    notes = [" ".join(t.get_text() for t in ax.texts).replace("\n", " ") for ax in fig.axes]
    assert notes[0].startswith("No AREG_net: the panel has no AREG channel")
    assert notes[1].startswith("No RI: it needs AREG_net (the panel has no AREG channel")
    assert notes[2] == "No CD107a_net: CD107a was not measured"
    assert notes[3] == "No % trNK: trNK is not gated in the unstimulated tubes"
    _assert_legend_clear(fig)
    # a scores table has no flags: the note still says what is missing
    table_notes = repair_profile(no_areg.scores).axes[0].texts
    assert table_notes[0].get_text().replace("\n", " ") == (
        "No AREG_net: AREG+ events were not counted"
    )


@pytest.mark.parametrize("suffix", ["", "_Unstim_Control_with_a_long_file_name"])
def test_repair_profile_with_data_has_no_notes_and_a_clear_legend(result, suffix):
    """A legend of long sample ids ran over the last panel and its title."""
    scores = result.scores.assign(sample_id=result.scores["sample_id"] + suffix)
    fig = repair_profile(scores, populations=["NK", "CD56bright", "CD56dim"])  # a short figure
    assert all(not ax.texts for ax in fig.axes)
    _assert_legend_clear(fig)


def test_a_fragile_flag_is_drawn_half_filled(result):
    """Flagged at the cut-off but failing at an end of its AREG FMO cut-off's interval: the
    figure drew it as firmly as the others."""
    scores = result.scores.copy()
    tube = scores.query("sample_id == 'd0_stim' and flaggable and areg_responsive")
    assert len(tube) >= 2
    scores["holds_across_cutoff_interval"] = pd.array([pd.NA] * len(scores), dtype="boolean")
    scores.loc[tube.index, "holds_across_cutoff_interval"] = True
    scores.loc[tube.index[0], "holds_across_cutoff_interval"] = False
    fig = repair_profile(scores, sample_id="d0_stim")
    half = [ln for ln in fig.axes[0].lines if ln.get_fillstyle() == "left"]
    assert len(half) == 1 and len(half[0].get_xdata()) == 1
    assert half[0].get_xdata()[0] == pytest.approx(scores.loc[tube.index[0], "areg_net"])
    filled = fig.axes[0].collections[-2].get_offsets().shape[0]
    assert filled == len(tube) - 1  # the sturdy flags stay filled
    assert "half = fragile" in fig.axes[0].get_title()
