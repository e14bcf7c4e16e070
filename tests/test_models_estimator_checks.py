"""scikit-learn's estimator checks on nkflow.models.

Skipped checks, and why:

- ``SOM`` / ``check_clustering``: the check wants consecutive labels and an ARI > 0.4 against
  three blobs of 50 points. A SOM over-clusters on purpose (100 nodes by default, some of
  them empty), so neither holds; the metaclustering step is what merges nodes, and
  ``ConsensusMetaclustering`` passes the same check.
"""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from nkflow.models import SOM, ConsensusMetaclustering


def _expected_failed(estimator):
    """What the estimator declares (``SOM.expected_failed_checks``), else nothing."""
    return dict(getattr(estimator, "expected_failed_checks", {}))


@parametrize_with_checks(
    [
        SOM(xdim=4, ydim=4, rlen=3, random_state=0),
        ConsensusMetaclustering(n_clusters=3, n_resamples=10, random_state=0),
        ConsensusMetaclustering(n_clusters=None, max_clusters=6, n_resamples=10, random_state=0),
    ],
    expected_failed_checks=_expected_failed,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
