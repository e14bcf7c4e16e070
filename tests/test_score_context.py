"""Sample context beside every flag: glucocorticoid exposure from the sheet or the treatment
text, one reading per context, and one list of steroid names (BIOLOGY.md section 3(4)).

Tiny hand-made count tables: one donor, one unstimulated tube, stimulated tubes that respond.
"""

from __future__ import annotations

import tomllib
import warnings
from importlib import resources

import pandas as pd
import pytest

from nkflow.exceptions import ContextWarning
from nkflow.tl._score_config import ScoringConfig
from nkflow.tl._score_context import NOT_NK_EVIDENCE, is_nk_population, read_exposure
from nkflow.tl._score_names import STEROID_NAMES, steroid_in_treatment
from nkflow.tl.caveats import PRO_TUMOUR_TEXT
from nkflow.tl.score import score

COUNT_KEYS = ("n_events", "n_areg", "n_ifng", "n_nkg2d", "n_cd107a", "n_areg_only",
              "n_ifng_only", "n_areg_ifng", "n_trnk")  # fmt: skip


def crow(sample_id: str, population: str, n: int, areg: int) -> dict:
    row = dict(zip(COUNT_KEYS, (n, areg, 0, 0, 0, areg, 0, 0, 0), strict=True))
    row.update(sample_id=sample_id, population=population, threshold_areg=1.0,
               areg_rule="fmo_percentile:99.5", areg_control_file="fmo.fcs")  # fmt: skip
    return row


def case(stimulation: str = "IL-15", **context: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tube ``s`` (NK net 4 pp, ILC control net 19 pp) against its unstimulated tube ``u``."""
    counts = [crow("u", "NK", 1000, 5), crow("u", "ILC", 200, 2),
              crow("s", "NK", 1000, 45), crow("s", "ILC", 200, 40)]  # fmt: skip
    base = dict(donor="d1", tissue="liver", timepoint="post", batch="b1", species="human")
    meta = [
        dict(base, sample_id="u", stimulation="unstim", role="unstim", **context),
        dict(base, sample_id="s", stimulation=stimulation, role="stim", **context),
    ]
    return pd.DataFrame(counts), pd.DataFrame(meta)


def nk_flag(stimulation: str = "IL-15", **context: str) -> pd.Series:
    counts, meta = case(stimulation, **context)
    flags = score(counts, meta).flags
    row = flags[flags["population"] == "NK"].iloc[0]
    assert row["areg_responsive"], row["message"]
    return row


@pytest.mark.parametrize(
    ("recorded", "treatment", "exposure", "source"),
    [
        ("", "chemotherapy + dexamethasone", "yes", "treatment names dexamethasone"),
        ("", "R-CHOP x6", "yes", "prednisone (CHOP)"),
        ("", "Methylprednisolone pulse", "yes", "methylprednisolone"),
        ("unknown", "budesonide inhaler", "yes", "the sheet says unknown"),
        ("no", "chemotherapy + Dexamethasone", "unknown", "sheet says no, but the treatment"),
        ("yes", "", "yes", "sheet"),
        ("no", "chemotherapy", "no", "sheet"),
        ("unknown", "chemotherapy", "unknown", "treatment 'chemotherapy'"),
        ("", "chemotherapy", "unknown", "not recorded"),
        ("", "chemo + dex", "unknown", "'dex' may or may not be a glucocorticoid"),
        ("", "chemotherapy, no dexamethasone", "unknown", "not recorded"),
        ("", "steroid-free regimen", "unknown", "not recorded"),
        ("no", "steroid-naive", "no", "sheet"),
        ("", "chemotherapy, dexamethasone withheld", "unknown", "not recorded"),
        ("no", "no prior steroids", "no", "sheet"),
        ("no", "not on steroids", "no", "sheet"),
        ("no", "off steroids since 2019", "no", "sheet"),
        ("", "chemotherapy; dexamethasone discontinued", "yes", "names dexamethasone"),
        ("", "", "", "not recorded"),
        ("", "dexrazoxane", "unknown", "not recorded"),  # a whole word, not a prefix
    ],
)
def test_exposure_from_the_sheet_or_the_treatment_text(recorded, treatment, exposure, source):
    got, where = read_exposure(recorded, treatment)
    assert got == exposure
    assert source in where


def test_blank_glucocorticoid_column_reads_the_treatment_text():
    """D2 post-treatment tubes were flagged with no context although their treatment said
    'chemotherapy + dexamethasone'."""
    row = nk_flag(glucocorticoid="", treatment="chemotherapy + dexamethasone")
    assert row["context"] == "glucocorticoid"
    assert row["glucocorticoid"] == "yes"
    assert "treatment names dexamethasone" in row["interpretation"]
    assert "NR3C1" in row["message"] and PRO_TUMOUR_TEXT in row["message"]


def test_no_beside_a_steroid_in_the_treatment_warns_and_reads_unknown():
    """Two records disagree: neither the sheet's 'no' nor the text's steroid is believed
    over the other; the flag says the pro-tumour reading cannot be excluded."""
    counts, meta = case(glucocorticoid="no", treatment="chemotherapy + prednisolone")
    with pytest.warns(ContextWarning, match="2 tube.*'no'.*read as unknown"):
        flags = score(counts, meta).flags
    row = flags[flags["population"] == "NK"].iloc[0]
    assert row["glucocorticoid"] == "unknown"
    assert "the sheet says no, but the treatment names prednisolone" in row["message"]


def test_an_agreeing_sheet_does_not_warn():
    counts, meta = case(glucocorticoid="yes", treatment="chemotherapy + dexamethasone")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ContextWarning)
        score(counts, meta)


@pytest.mark.parametrize(
    ("context", "said"),
    [
        ({"glucocorticoid": "unknown", "treatment": "chemotherapy"}, "cannot be excluded"),
        ({"glucocorticoid": "", "treatment": "chemotherapy"}, "cannot be excluded"),
        ({"glucocorticoid": "no", "treatment": "chemotherapy"}, "exposure: no (sheet)"),
        ({"glucocorticoid": "", "treatment": ""}, "exposure: not recorded"),
        ({}, "exposure: not recorded"),
    ],
)
def test_every_flag_states_the_exposure(context, said):
    row = nk_flag(**context)
    assert "glucocorticoid exposure" in row["message"]
    assert said in row["message"]
    if "cannot be excluded" in said:
        assert row["context"] == "glucocorticoid unknown"
        assert PRO_TUMOUR_TEXT not in row["interpretation"]  # not claimed, not excluded


@pytest.mark.parametrize(
    ("context", "tumour", "steroid"),
    [
        ({"tissue_kind": "tumour", "glucocorticoid": "no"}, True, False),
        ({"tissue_kind": "normal tissue", "glucocorticoid": "yes"}, False, True),
        ({"tissue_kind": "tumour", "glucocorticoid": "yes"}, True, True),
    ],
)
def test_each_context_gives_its_own_reason(context, tumour, steroid):
    """Tumour rows without a glucocorticoid got the glucocorticoid/NR3C1 text."""
    text = nk_flag(**context)["interpretation"]
    assert ("tumour tissue: NK cells in tumours make more AREG" in text) == tumour
    assert ("in skin tumours; Wei et al., Adv Sci 2025" in text) == tumour
    assert ("NR3C1" in text) == steroid
    # tumour and steroid together: the conclusion they share is said once, not twice
    assert text.count(PRO_TUMOUR_TEXT) == 1
    assert ("steroid-induced" in text) == steroid


@pytest.mark.parametrize(
    ("population", "flaggable", "nk"),
    [
        ("NK", False, True),
        ("NK_AREG+", False, True),
        ("CD56bright", False, True),
        ("CD56dim_trNK", False, True),
        ("trNK", False, True),
        ("cNK_CD27+CD11b-", False, True),
        ("metacluster:3", False, True),
        ("my_nk_gate", True, True),
        ("NKT-like", False, False),
        ("ILC", False, False),
        ("Lymphocytes", False, False),
        ("Cells", False, False),
        ("CD3-", False, False),
    ],
)
def test_which_populations_are_nk(population, flaggable, nk):
    assert is_nk_population(population, flaggable) == nk


@pytest.mark.parametrize(
    "context",
    [{"tissue_kind": "tumour", "glucocorticoid": "yes"}, {"glucocorticoid": "unknown"}],
)
def test_non_nk_rows_get_no_nk_reading(context):
    """The ILC control row read 'AREG+ NK here may be steroid-induced' and 'reported in
    human NK': the NK literature says nothing about ILCs."""
    counts, meta = case(**context)
    scores = score(counts, meta).scores
    ilc = scores[scores["population"] == "ILC"].iloc[0]
    nk = scores[scores["population"] == "NK"].iloc[0]
    assert "NK" not in ilc["interpretation"].replace("NK AREG", "")
    assert "AREG+ NK" not in ilc["interpretation"] and "NR3C1" not in ilc["interpretation"]
    assert ilc["interpretation"].startswith("context: ")
    assert ilc["evidence"] == NOT_NK_EVIDENCE
    assert "reported in human NK" in nk["evidence"]
    assert "NR3C1" in nk["interpretation"]


@pytest.mark.parametrize(
    "stimulation",
    ["IL-15 + betamethasone", "prednisone", "IL-15 + Hydrocortisone", "budesonide 1uM",
     "triamcinolone", "IL-15/fludrocortisone", "cortisol", "Prednisolone"],
)  # fmt: skip
def test_every_steroid_name_makes_a_glucocorticoid_condition(stimulation):
    row = nk_flag(stimulation, glucocorticoid="no")
    assert row["context"] == "glucocorticoid condition"
    assert "glucocorticoid stimulation condition" in row["interpretation"]


def test_a_lab_list_cannot_drop_a_steroid_name():
    counts, meta = case("IL-15 + prednisone")
    res = score(counts, meta, config=ScoringConfig(glucocorticoid_conditions=("dex",)))
    assert (res.scores["context"] == "glucocorticoid condition").all()


@pytest.mark.parametrize("species", ["human", "mouse"])
def test_shipped_configs_list_every_steroid_name(species):
    text = resources.files("nkflow").joinpath("data", f"scoring_{species}.toml").read_text()
    listed = tomllib.loads(text)["context"]["glucocorticoid_conditions"]
    assert set(STEROID_NAMES) <= set(listed)


def test_treatment_text_and_conditions_share_the_names():
    for name in STEROID_NAMES:
        assert steroid_in_treatment(f"chemotherapy + {name.upper()}")[0] == name


@pytest.mark.parametrize(
    ("stimulation", "inhibited"),
    [("IL-15 + TGF-beta1", True), ("IL-15 + TGF-β1", True), ("IL-15/TGFb", True),
     ("TGF-β", True), ("IL-15 + TGFB1 10 ng/ml", True), ("IL-15", False),
     ("IL-15 + anti-TGF-beta", False)],
)  # fmt: skip
def test_a_flag_under_tgf_beta_is_unexpected(stimulation, inhibited):
    """TGF-beta1 inhibits NK AREG (Wang 2023): a flag there went without a word."""
    row = nk_flag(stimulation)
    assert ("INHIBITOR_CONDITION" in row["notes"]) == inhibited
    assert ("unexpected under" in row["message"]) == inhibited


def test_inhibitor_conditions_are_configurable():
    counts, meta = case("IL-15 + compound-7")
    cfg = ScoringConfig(inhibitor_conditions=("compound 7",))
    flags = score(counts, meta, config=cfg).flags
    assert "INHIBITOR_CONDITION" in flags.loc[flags["population"] == "NK", "notes"].iloc[0]


def test_methods_say_where_exposure_was_read():
    from nkflow.report.methods_analysis import scoring_sentence

    counts, meta = case(glucocorticoid="", treatment="chemotherapy")
    res = score(counts, meta)
    text = scoring_sentence({}, {}, meta, {"scores": res.scores, "controls": res.controls})
    assert "read from the treatment text" in text
    assert "cannot be excluded" in text
