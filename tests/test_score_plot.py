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
