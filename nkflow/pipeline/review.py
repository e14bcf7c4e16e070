"""``nkflow check``: a batch's consistency report and its gating plan, judged together.

:func:`review_batch` compares the files' layouts (:func:`nkflow.io.check_batch`) and plans
the gating (:func:`~nkflow.pipeline.plan.plan_batch`) as ``nkflow run`` would, before
anything is printed, so that the report's first line gives the verdict of both: a batch
whose layouts agree but whose panel cannot be gated is not called OK.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import RunConfig, replace_values
from ..exceptions import GatingTemplateError, NkflowError, PanelMismatchError
from ..io.batch import check_batch, read_batch
from ..io.batch_check import BatchCheck
from .plan import BatchPlan, plan_batch

__all__ = ["BatchReview", "review_batch"]


@dataclass
class BatchReview:
    """What ``nkflow check`` reports.

    Attributes
    ----------
    check
        The files' consistency (:func:`nkflow.io.check_batch`).
    plan
        The gating plan; None when the batch cannot be planned (:attr:`plan_error`).
    plan_error
        Why no plan could be made: no file can be gated, the batch mixes species, ...
    refused
        ``(path, error)`` of the files the plan cannot gate that :attr:`check` does not
        already list as unusable (e.g. a panel without an NK anchor).
    """

    check: BatchCheck
    plan: BatchPlan | None = None
    plan_error: NkflowError | None = None
    refused: list[tuple[str, BaseException]] = field(default_factory=list)

    def report_text(self) -> str:
        """The consistency report, its first line the verdict of the layouts and the plan."""
        return self.check.to_string(
            refused=len(self.refused), plan_failed=self.plan_error is not None
        )

    def failures(self, input_path: str | Path) -> list[tuple[str, BaseException | str]]:
        """``(where, why)`` per problem, one FAILED line each: the batch's, then each file's.

        Parameters
        ----------
        input_path
            The folder or sheet checked, named for a problem of the whole batch.

        Returns
        -------
        list of tuple
            Empty when the batch can be run as it is. A file the batch's own line already
            names with its reason (no file can be gated) has no line of its own.
        """
        lines: list[tuple[str, BaseException | str]] = []
        named: set[Path] = set()
        if self.plan_error is not None:
            lines.append((str(input_path), self.plan_error))
            # a raw or transformed file the batch's line names with its reason is not
            # printed again on its own line
            named = {_resolved(p) for p in getattr(self.plan_error, "paths", ())}
        lines += [
            (str(r.file), str(r.reason))
            for r in self.check.problems.itertuples()
            if _resolved(r.file) not in named
        ]
        return lines + list(self.refused)


def _resolved(path: object) -> Path:
    try:
        return Path(str(path)).resolve()
    except (OSError, RuntimeError):
        return Path(str(path))


def review_batch(
    input_path: str | Path,
    *,
    panel: str | Path | None = None,
    template: str | None = None,
    cluster: bool = True,
    score: bool = True,
) -> BatchReview:
    """Check a batch's files and plan its gating, as ``nkflow run`` would.

    Parameters
    ----------
    input_path
        Folder, metadata sheet or FCS file.
    panel
        Panel file (``channel -> marker``).
    template
        Gating template name or file; default: by species and tissue.
    cluster, score
        Whether the run will cluster and score (``nkflow run --no-cluster --no-score``
        sets both False): a batch of two species can be gated, not pooled.

    Returns
    -------
    BatchReview

    Raises
    ------
    NkflowError
        The sheet or folder cannot be read (the files' own problems are in the review).
    GatingTemplateError
        The template does not exist or is invalid (a usage error, not the batch's).
    """
    batch = read_batch(input_path, panel=panel)  # the sheet read once: its notes said once
    review = BatchReview(check=check_batch(batch, panel=panel, raise_on_error=False))
    config = replace_values(
        RunConfig(),
        {
            "panel": str(panel) if panel else None,
            "gating.template": template,
            "clustering.enabled": cluster,
            "scoring.enabled": score,
        },
    )
    meta = batch.metadata
    try:
        review.plan = plan_batch(meta, config)
    except PanelMismatchError as exc:
        review.plan_error = exc
        return review
    except GatingTemplateError:
        raise
    except NkflowError as exc:  # e.g. a batch of two species
        review.plan_error = exc
        return review
    paths = dict(zip(meta["sample_id"].astype(str), meta["path"].astype(str), strict=True))
    listed = set(review.check.problems["file"].astype(str))
    review.refused = [
        (paths.get(sid, sid), exc)
        for sid, exc in review.plan.unreadable.items()
        if paths.get(sid, sid) not in listed
    ]
    return review
