"""A delivery's rendered mail lives in `delivery_contents`, written by planning alone.

The state changes of a send (enqueued, sending, sent) write new versions of the narrow
`deliveries` row and none of the contents row, and the mail sent is still the one planned.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from app.config import Settings
from app.core.clock import utcnow
from app.db import jobs as store
from app.db.session import session_scope
from app.delivery.mail.outbox_backend import OutboxBackend
from app.delivery.sending import deliver
from app.jobs import dispatch
from app.portal.outbox import load_message
from harness.delivery import seed

pytestmark = pytest.mark.integration


class RecordingPublisher:
    """Keeps what the dispatcher would put on the `emails` queue."""

    def __init__(self) -> None:
        self.tasks: list[dict[str, Any]] = []

    def publish(
        self,
        tasks: Sequence[tuple[dict[str, Any], float | None]],
        *,
        resolution_s: float = 1.0,
        counted_from: datetime | None = None,
    ) -> None:
        self.tasks.extend(task for task, _delay in tasks)


def _row(delivery_id: uuid.UUID) -> Any:
    """The delivery's state, its mail, and the transaction that wrote each one's current version."""
    with session_scope() as session:
        return session.execute(
            text(
                "SELECT d.*, d.xmin::text AS state_xmin, c.xmin::text AS content_xmin,"
                " c.subject, c.body_html, c.body_text, c.headers"
                " FROM deliveries d LEFT JOIN delivery_contents c USING (delivery_id)"
                " WHERE delivery_id = :d"
            ),
            {"d": delivery_id},
        ).one()


def _mail(row: Any) -> tuple[Any, ...]:
    return (row.subject, row.body_html, row.body_text, row.headers)


def test_a_send_changes_the_state_row_only_and_sends_the_planned_mail(
    db: str, settings: Settings, tmp_path: Path
) -> None:
    [(delivery_id, _user, _kind)] = seed(settings, utcnow(), ["mailing"])
    planned = _row(delivery_id)
    assert planned.status == "scheduled" and planned.content_xmin is not None
    assert planned.subject and planned.body_html and planned.body_text
    assert planned.headers["List-Unsubscribe"].startswith("<http")

    publisher = RecordingPublisher()
    assert dispatch.dispatch_due(publisher=publisher, now=utcnow()) == 1
    enqueued = _row(delivery_id)
    assert enqueued.status == "enqueued" and enqueued.state_xmin != planned.state_xmin
    assert enqueued.content_xmin == planned.content_xmin
    [task] = publisher.tasks
    assert (task["subject"], task["body"], task["text"], task["headers"]) == _mail(planned)

    outbox = tmp_path / "outbox"
    backend = OutboxBackend(outbox, sender=settings.email_from)
    assert deliver(task, backend=backend, settings=settings, now=utcnow()).result == "sent"
    sent = _row(delivery_id)
    assert (sent.status, sent.attempts) == ("sent", 1)  # claimed (`sending`) once, then recorded
    assert sent.state_xmin not in (planned.state_xmin, enqueued.state_xmin)
    assert sent.content_xmin == planned.content_xmin
    assert _mail(sent) == _mail(planned)

    message = load_message(outbox, f"{delivery_id}.eml")
    assert message is not None
    assert message.subject == planned.subject
    assert (message.html or "").strip() == planned.body_html.strip()
    assert (message.text or "").strip() == planned.body_text.strip()
    assert dict(message.headers)["List-Unsubscribe"] == planned.headers["List-Unsubscribe"]


def test_a_delivery_without_its_mail_is_claimed_and_fails_alone(
    db: str, settings: Settings
) -> None:
    planned = seed(settings, utcnow(), ["welcome", "likes", "mailing"])
    lost = planned[1][0]
    with session_scope() as session:  # e.g. a row written by hand, or by an older version
        session.execute(text("DELETE FROM delivery_contents WHERE delivery_id = :d"), {"d": lost})
    publisher = RecordingPublisher()
    assert dispatch.dispatch_due(publisher=publisher, now=utcnow()) == 3
    assert {t["delivery_id"] for t in publisher.tasks} == {str(d) for d, _u, _k in planned} - {
        str(lost)
    }
    broken = _row(lost)
    assert broken.status == "failed" and "task contract" in broken.error
    assert {_row(d).status for d, _u, _k in planned if d != lost} == {"enqueued"}


def _plan_again(row: Any, **changes: Any) -> dict[str, Any]:
    """A plan for the row's notification and period, as planning builds one (DeliveryPlan)."""
    columns = ("notification_id", "period_key", "send_at", "send_reason", "email")
    plan = {c: getattr(row, c) for c in columns}
    plan.update(status="scheduled", reported_count=0, error=None, headers={})
    return {**plan, **changes}


def test_planning_again_rewrites_the_mail_of_a_failed_delivery_and_of_no_other(
    db: str, settings: Settings
) -> None:
    [(failed, _u, _k), (kept, _u2, _k2)] = seed(settings, utcnow(), ["mailing", "mailing"])
    with session_scope() as session:
        session.execute(
            text("UPDATE deliveries SET status = 'failed' WHERE delivery_id = :d"), {"d": failed}
        )
    before = {d: _row(d) for d in (failed, kept)}
    mail = {"subject": "Again", "body_html": "<p>again</p>", "body_text": "again"}
    plans = [_plan_again(before[d], **mail, headers={"X-Again": "1"}) for d in (failed, kept)]
    with session_scope() as session:
        recorded = store.record_plans(session=session, plans=plans, now=utcnow())
    assert recorded == [(before[failed].notification_id, "scheduled")]
    again, untouched = _row(failed), _row(kept)
    assert (again.status, _mail(again)) == ("scheduled", (*mail.values(), {"X-Again": "1"}))
    assert again.content_xmin != before[failed].content_xmin
    assert _mail(untouched) == _mail(before[kept])
    assert untouched.content_xmin == before[kept].content_xmin

    # Planned again as skipped: no mail, and none of the replaced plan's left behind.
    with session_scope() as session:
        session.execute(
            text("UPDATE deliveries SET status = 'failed' WHERE delivery_id = :d"), {"d": failed}
        )
        skipped = _plan_again(
            again, status="skipped", subject=None, body_html=None, body_text=None, error="opted out"
        )
        assert store.record_plans(session=session, plans=[skipped], now=utcnow()) == [
            (again.notification_id, "skipped")
        ]
    assert _mail(_row(failed)) == (None, None, None, {})
    with session_scope() as session:
        assert session.scalar(text("SELECT count(*) FROM delivery_contents")) == 2
