from __future__ import annotations

import io

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
