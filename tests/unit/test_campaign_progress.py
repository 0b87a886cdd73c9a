"""Campaign progress: per-state counts folded into the buckets the progress bar shows."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from app.domain.campaigns import Progress, progress_of
from app.portal.api_models import CampaignProgress


def test_states_fold_into_buckets() -> None:
    states = {
        "sent": 3,
        "delivered": 2,
        "bounced": 1,
        "failed": 1,
        "skipped": 1,
        "notified:skipped": 1,
        "cancelled": 2,
        "scheduled": 4,
        "notified:pending": 5,
    }
    progress = progress_of(25, 24, states)
    assert progress == Progress(
        total=25, published=24, notified=20, sent=5, failed=2, skipped=2, cancelled=2
    )
    assert progress.waiting == 9
    assert progress.done == 11
    assert progress.percent(progress.sent) == 20.0


def test_empty_campaign_has_zero_percent() -> None:
    progress = progress_of(0, 0, {})
    assert (progress.percent(0), progress.waiting, progress.done) == (0.0, 0, 0)


def test_the_api_model_describes_exactly_what_the_progress_answers() -> None:
    progress = progress_of(25, 24, {"sent": 5, "failed": 2, "notified:pending": 9})
    body = progress.answer("published")
    answered = CampaignProgress.model_validate(body).model_dump(mode="json")
    assert answered == body
    assert answered["waiting"] == 9 and answered["percent"]["sent"] == 20.0
    assert set(CampaignProgress.model_fields) == {"status", "percent", "eta", *progress.counts()}
    eta = datetime(2026, 12, 10, 9, 30, tzinfo=UTC)
    with_eta = CampaignProgress.model_validate(replace(progress, eta=eta).answer("published"))
    assert with_eta.model_dump()["eta"] == eta
