"""Warning wording of the gating engine: it names the rule that set the threshold."""

from __future__ import annotations

import warnings

import pytest

from nkflow.exceptions import MissingControlWarning
from nkflow.gating import gate


def test_a_missing_fmo_warning_names_the_mirror_the_valley_fell_back_to(gated_liver):
    """The liver tube's NK show no NKG2D valley: thresholds.csv records 'mirror (fmo
    fallback)', and the one warning for NKG2D said 'valley' (it was issued before the fit)."""
    adata = gated_liver[0].copy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gate(adata, "human_tissue", n_boot=0)
    nkg2d = [
        str(w.message)
        for w in caught
        if issubclass(w.category, MissingControlWarning)
        and "no FMO threshold for NKG2D" in str(w.message)
    ]
    assert len(nkg2d) == 1
    assert "fallback rule 'valley' on the sample, which fell back to 'mirror'" in nkg2d[0]


@pytest.mark.parametrize(
    ("rule", "used", "says", "not_says"),
    [
        ("valley", "valley", "fallback rule 'valley' on the sample", "fell back"),
        ("valley", "mirror", "which fell back to 'mirror' (the sample shows no valley", "x"),
        ("gmm", "valley", "which fell back to 'valley'", "no valley"),
        ("valley", "insufficient events", "not fitted: too few events", "fell back"),
        ("quantile", "quantile", "positive by construction", "fell back"),
    ],
)
def test_the_missing_fmo_message_follows_the_rule_used(rule, used, says, not_says):
    from nkflow.gating.engine import _missing_fmo_message

    msg = _missing_fmo_message("s1", "blood", "b1", "NKG2D", "NK", rule, used, 99.5)
    assert msg.startswith("sample 's1' (tissue 'blood', batch 'b1'): no FMO threshold")
    assert says in msg and not_says not in msg
