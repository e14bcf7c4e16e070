"""Positive controls: a control that could not be judged is insufficient, never "did not
respond", and every flag names which control it stood on (BIOLOGY.md 6(a), 6(c)).

Tiny hand-made count tables: NK responds (net 4 pp) in tube ``s`` against ``u``.
"""

from __future__ import annotations

import pandas as pd
import pytest
from test_score_context import crow

from nkflow.report.findings import flag_meaning
from nkflow.report.methods_analysis import scoring_sentence
from nkflow.report.repair import repair_section
from nkflow.tl._score_config import ScoringConfig
from nkflow.tl._score_parts import _control_verdict
from nkflow.tl.score import RULES, score


def case(ilc_stim: tuple[int, int], ilc_unstim: tuple[int, int] = (200, 2)):
    """The control is the stimulated tube's own ILC gate (no positive-control tube)."""
    counts = [crow("u", "NK", 1000, 5), crow("u", "ILC", *ilc_unstim),
              crow("s", "NK", 1000, 45), crow("s", "ILC", *ilc_stim)]  # fmt: skip
    base = dict(donor="d1", tissue="blood", timepoint="pre", batch="b1", species="human")
    meta = [dict(base, sample_id="u", stimulation="unstim", role="unstim"),
            dict(base, sample_id="s", stimulation="IL-15", role="stim")]  # fmt: skip
    return pd.DataFrame(counts), pd.DataFrame(meta)


@pytest.mark.parametrize(
    ("failed", "verdict"),
    [
        ("", "passed"),
        ("EVENTS_BELOW_MIN", "insufficient"),
        ("EVENTS_BELOW_MIN;AREG_EVENTS_BELOW_MIN", "insufficient"),
        ("AREG_EVENTS_BELOW_MIN", "insufficient"),  # responded, too few events to count
        ("AREG_EVENTS_BELOW_MIN;CI_LOWER_NOT_ABOVE_ZERO;NET_BELOW_MIN", "failed"),
        ("NET_BELOW_MIN", "failed"),
        ("NO_UNSTIM", "no baseline"),
    ],
)
def test_control_verdict(failed, verdict):
    assert _control_verdict(failed) == verdict


@pytest.mark.parametrize(
    ("ilc_stim", "ilc_unstim", "rule", "said"),
    [
        # the audit's case: net 32.5 pp on 40 events read "did not respond"
        ((40, 13), (200, 2), "POSITIVE_CONTROL_INSUFFICIENT", "40/200 events stim/unstim"),
        ((200, 40), (30, 0), "POSITIVE_CONTROL_INSUFFICIENT", "200/30 events stim/unstim"),
        ((200, 8), (200, 0), "POSITIVE_CONTROL_INSUFFICIENT", "fewer than 10 AREG+ events"),
        ((200, 2), (200, 2), "POSITIVE_CONTROL_FAILED", "did not respond"),
    ],
)
def test_a_control_too_small_to_judge_is_insufficient(ilc_stim, ilc_unstim, rule, said):
    counts, meta = case(ilc_stim, ilc_unstim)
    res = score(counts, meta)
    nk = res.flags.set_index("population").loc["NK"]
    assert nk["failed_rules"] == rule and not nk["areg_responsive"]
    assert said in nk["message"]
    insufficient = rule == "POSITIVE_CONTROL_INSUFFICIENT"
    assert ("did not respond" in nk["message"]) != insufficient
    assert ("could not be judged" in nk["message"]) == insufficient
    verdict = res.controls["verdict"].iloc[0]
    assert verdict == ("insufficient" if insufficient else "failed")
    assert pd.isna(res.controls["passed"].iloc[0]) == insufficient
    assert rule in RULES


def test_a_flag_names_its_own_gate_when_the_batch_has_no_control_tube():
    counts, meta = case((200, 40))
    nk = score(counts, meta).flags.set_index("population").loc["NK"]
    assert nk["areg_responsive"]
    assert "own ILC gate; the batch has no positive-control tube" in nk["message"]
    meaning = flag_meaning(nk)
    said = "positive control (this stimulated tube's own ILC gate; the batch has no "
    assert said + "positive-control tube)" in meaning


@pytest.mark.parametrize(
    ("source", "said"),
    [
        ("positive_control tube", "the batch's positive-control tube"),
        ("stimulated tube's own gate", "the batch has no positive-control tube"),
        ("user verdict", "verdict given for the batch"),
        ("", "no positive control (none was required)"),
    ],
)
def test_flag_meaning_names_the_positive_control(source, said):
    row = pd.Series({"control_source": source, "ri": 0.2, "repair_biased": False})
    assert said in flag_meaning(row)


def test_report_and_methods_say_the_batch_had_no_control_tube():
    counts, meta = case((40, 13))
    res = score(counts, meta)
    tables = {"controls": res.controls, "flags": res.flags, "scores": res.scores}
    html = repair_section(tables, res.caveats, [], [0])
    assert "b1 had no dedicated positive-control tube" in html
    text = scoring_sentence({}, {}, meta, tables)
    assert "had no dedicated positive-control tube" in text
    assert "1 positive-control evaluation(s) were insufficient, with too few events" in text


@pytest.mark.parametrize(
    ("value", "op", "cut", "text"),
    [
        (0.9988, "<", 1.0, "0.999"),  # read "1.00 pp < 1 pp"
        (0.5004, ">", 0.5, "0.5004"),
        (0.4996, "<=", 0.5, "0.50"),
        (-0.001, "<=", 0.0, "-0.00"),
        (0.25, "<", 1.0, "0.25"),
    ],
)
def test_numbers_in_a_message_are_shown_so_the_comparison_reads_true(value, op, cut, text):
    from nkflow.tl._score_messages import shown

    assert shown(value, op, cut) == text


def test_net_just_below_the_minimum_reads_below_it():
    counts, meta = case((200, 40))
    unstim_nk = (counts["sample_id"] == "u") & (counts["population"] == "NK")
    counts.loc[unstim_nk, "n_events"] = 999  # net 4.5 - 0.5005 = 3.9995 pp
    nk = score(counts, meta, config=ScoringConfig(min_net=4.0)).flags
    message = nk.set_index("population").loc["NK", "message"]
    assert "NET_BELOW_MIN: AREG_net 3.999 pp < 4 pp" in message  # read "4.00 pp < 4 pp"


@pytest.mark.parametrize(
    ("listed", "said"),
    [
        (("NK", "trNK", "CD56bright_trNK", "metacluster:*"),
         "trNK, CD56bright_trNK were not gated in any stimulated tube"),
        (("NK", "metacluster:*"), None),
    ],
)  # fmt: skip
def test_methods_name_flaggable_populations_no_stimulated_tube_had(listed, said):
    """Methods listed trNK populations as flaggable although stimulated tubes skip them."""
    counts, meta = case((200, 40))
    res = score(counts, meta, config=ScoringConfig(populations=listed))
    tables = {"scores": res.scores, "controls": res.controls}
    text = scoring_sentence({}, {"scoring": {"populations": list(listed)}}, meta, tables)
    if said is None:
        assert "were not gated in any stimulated tube" not in text
    else:
        assert said in text and "unstimulated tube only" in text
