"""`notify demo`: publish a realistic burst to Kafka and show it turn into e-mails."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import click
from sqlalchemy import func, select

from app.auth.dev_server import generate_users
from app.config import Settings, get_settings
from app.contracts import Event, encode_event
from app.db.models import Notification
from app.db.session import session_scope
from app.db.stats import delivery_counts, notification_counts
from app.db.templates import get_template_by_name
from app.domain.campaigns import Draft, parse_audience
from app.domain.vocabulary import Periodicity
from app.jobs.campaigns import create_campaign, publish_campaign
from app.kafka.producer import make_producer, publish_all


@dataclass(frozen=True, slots=True)
class DemoPlan:
    registrations: int
    liked_comments: int
    likes: int
    campaign_recipients: int


DEV_AUTH_USERS = 1000  # `make run` serves generate_users(1000): the ids the demo may use


@dataclass(frozen=True, slots=True)
class Burst:
    """What a demo published: events per topic, and who registered."""

    sent: dict[str, int]
    registered: list[uuid.UUID]


def _user_ids(count: int, rng: random.Random) -> list[uuid.UUID]:
    # A fresh sample each run: users registered by an earlier run already had their welcome mail.
    known = [uuid.UUID(u["user_id"]) for u in generate_users(max(count, DEV_AUTH_USERS))]
    return rng.sample(known, count)


def publish_burst(settings: Settings, plan: DemoPlan, *, seed: int | None = None) -> Burst:
    """Publish registrations, likes and a campaign; say what was published."""
    rng = random.Random(seed)
    users = _user_ids(max(plan.registrations, plan.campaign_recipients, 50), rng)
    producer = make_producer(settings)
    registrations = [
        (
            str(u).encode(),
            encode_event(Event(u, "once", None, f"{settings.public_base_url}/confirm?u={u.hex}")),
        )
        for u in users[: plan.registrations]
    ]
    comments = [(rng.choice(users[:50]), uuid.uuid4()) for _ in range(plan.liked_comments)]
    likes = []
    for i in range(plan.likes):
        owner, comment = comments[i % len(comments)]
        periodicity: Periodicity = "daily" if i % 3 else "weekly"
        event = Event(owner, periodicity, comment, f"My comment #{comment.hex[:6]}")
        likes.append((str(owner).encode(), encode_event(event)))
    sent = {
        settings.topic_user_registered: publish_all(
            producer, settings.topic_user_registered, registrations
        ).delivered,
        settings.topic_comment_liked: publish_all(
            producer, settings.topic_comment_liked, likes
        ).delivered,
    }
    with session_scope() as session:
        template_id = get_template_by_name(session=session, name="mailing").template_id
    audience = parse_audience("\n".join(str(u) for u in users[: plan.campaign_recipients]))
    campaign = create_campaign(
        draft=Draft("Demo: autumn news", template_id, "Our autumn update is here.", "once"),
        audience=audience,
        created_by="demo",
    )
    report = publish_campaign(
        campaign_id=campaign.campaign_id, producer=producer, topic=settings.topic_mailing
    )
    sent[settings.topic_mailing] = report.delivered
    return Burst(sent, users[: plan.registrations])


def progress_line() -> str:
    """One line: notifications by kind, deliveries by status."""
    with session_scope() as session:
        notifications = notification_counts(session=session)
        deliveries = delivery_counts(session=session)
    kinds: dict[str, int] = {}
    for (kind, _status), count in notifications.items():
        kinds[kind] = kinds.get(kind, 0) + count
    return (
        "notifications "
        + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
        + " | deliveries "
        + ", ".join(f"{s} {n}" for s, n in sorted(deliveries.items()))
    )


def watch(*, until: Callable[[], bool], timeout_s: float, show: Callable[[str], None]) -> bool:
    """Print progress every second until `until()` holds or the time is up."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        line = progress_line()
        if line != last:
            show(line)
            last = line
        if until():
            return True
        time.sleep(1)
    return False


def transactional_done(user_ids: list[uuid.UUID]) -> Callable[[], bool]:
    """True once the welcome e-mail of each of these users reached a final status."""

    def check() -> bool:
        with session_scope() as session:
            done = session.execute(
                select(func.count())
                .select_from(Notification)
                .where(
                    Notification.kind == "welcome",
                    Notification.user_id.in_(user_ids),
                    Notification.status.not_in(("pending", "queued")),
                )
            ).scalar_one()
        return done >= len(user_ids)

    return check


@click.command("demo")
@click.option("--registrations", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--likes", default=300, show_default=True, type=click.IntRange(min=0))
@click.option("--comments", default=30, show_default=True, type=click.IntRange(min=1))
@click.option("--campaign", "recipients", default=100, show_default=True, type=click.IntRange(1))
@click.option("--wait", "wait_s", default=60.0, show_default=True, help="Seconds to watch.")
def demo(registrations: int, likes: int, comments: int, recipients: int, wait_s: float) -> None:
    """Publish registrations, likes and a campaign to Kafka, then watch them become e-mails."""
    settings = get_settings()
    plan = DemoPlan(registrations, comments, likes, recipients)
    burst = publish_burst(settings, plan)
    for topic, count in burst.sent.items():
        click.echo(f"published {count:>5} events to {topic}")
    click.echo("watching the pipeline (welcome mail goes now; digests at each user's send hour):")
    done = watch(until=transactional_done(burst.registered), timeout_s=wait_s, show=click.echo)
    click.echo("all welcome e-mails handled" if done else "still working; look again soon")
    click.echo(f"  outbox (EMAIL_BACKEND=outbox): {settings.outbox_dir}")
    click.echo(f"  the same, rendered: {settings.public_base_url}/admin/outbox")
    click.echo(f"  admin portal:   {settings.public_base_url}/admin")
    click.echo(f"  Faust web view: {settings.faust_web_url}/likes/")
    click.echo(f"  Flower:         {settings.flower_url}")


COMMANDS = (demo,)
