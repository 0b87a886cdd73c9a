"""SQLAlchemy 2 models; Alembic migrations in app/db/migrations must match them.

Every table in one module, on purpose: the schema reads as one piece, next to the migrations that
build it and the test that compares the two (tests/integration/test_migrations.py).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from app.domain.vocabulary import (
    CAMPAIGN_STATUSES,
    CAP_POLICIES,
    DEAD_LETTER_STATUSES,
    DELIVERY_STATUSES,
    KINDS,
    NOTIFICATION_STATUSES,
    PERIODICITIES,
    PORTAL_ROLES,
    SUPPRESSION_REASONS,
)

# Stable constraint names so migrations can refer to them.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)


def _created() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Template(Base):
    """A Jinja e-mail template: subject (one line), HTML body, text body."""

    __tablename__ = "templates"

    template_id: Mapped[uuid.UUID] = _uuid_pk()
    name: Mapped[str] = mapped_column(String(100), unique=True, nullable=False)
    subject: Mapped[str] = mapped_column(Text, nullable=False)
    body_html: Mapped[str] = mapped_column(Text, nullable=False)
    body_text: Mapped[str] = mapped_column(Text, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )

    def __str__(self) -> str:
        return self.name


class Message(Base):
    """What a notification says: the seed's columns."""

    __tablename__ = "messages"

    message_id: Mapped[uuid.UUID] = _uuid_pk()
    content_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    content_value: Mapped[str] = mapped_column(Text, nullable=False, default="")
    template_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("templates.template_id"), nullable=False
    )

    template: Mapped[Template] = relationship(lazy="joined")


class Campaign(Base):
    """A mailing prepared in the admin portal; one `admin.mailing` event per recipient."""

    __tablename__ = "campaigns"
    __table_args__ = (
        CheckConstraint(_in("periodicity", PERIODICITIES), name="periodicity"),
        CheckConstraint(_in("status", CAMPAIGN_STATUSES), name="status"),
        CheckConstraint("local_send_hour BETWEEN 0 AND 23", name="local_send_hour"),
        CheckConstraint(
            "(local_send_date IS NULL) = (local_send_hour IS NULL)", name="local_send_pair"
        ),
        CheckConstraint("send_at IS NULL OR local_send_hour IS NULL", name="one_schedule"),
        CheckConstraint(_in("cap_policy", CAP_POLICIES), name="cap_policy"),
    )

    campaign_id: Mapped[uuid.UUID] = _uuid_pk()
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    template_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("templates.template_id"), nullable=False
    )
    content_value: Mapped[str] = mapped_column(Text, nullable=False, default="")
    periodicity: Mapped[str] = mapped_column(String(10), nullable=False, default="once")
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="draft")
    total_recipients: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    published_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[datetime] = _created()
    # Audience entries that were not user ids: kept so the portal can list them back.
    invalid_recipients: Mapped[list[str]] = mapped_column(
        JSONB, nullable=False, default=list, server_default=text("'[]'::jsonb")
    )
    created_by: Mapped[str | None] = mapped_column(String(100))
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A scheduled campaign: its mail goes at `send_at`, or at `local_send_hour` on
    # `local_send_date` in each recipient's own zone (quiet hours respected); unset: at once.
    send_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    local_send_date: Mapped[date | None] = mapped_column(Date)
    local_send_hour: Mapped[int | None] = mapped_column(Integer)
    # Over a recipient's frequency cap: hold the mail, skip it, or send it regardless.
    cap_policy: Mapped[str] = mapped_column(
        String(10), nullable=False, default="hold", server_default="hold"
    )

    template: Mapped[Template] = relationship()

    def __str__(self) -> str:
        return self.name


class CampaignRecipient(Base):
    """One user of a campaign's audience (its events are published from these rows)."""

    __tablename__ = "campaign_recipients"

    campaign_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("campaigns.campaign_id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)


class Notification(Base):
    """One thing to tell one user: the seed's columns plus what correctness needs.

    `kind` + `user_id` + `content_id` is the stream key (NULLS NOT DISTINCT, so the one welcome
    per user with no content id is unique too); `like_count` is the persisted like counter.
    """

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint(
            "kind",
            "user_id",
            "content_id",
            name="uq_notifications_key",
            postgresql_nulls_not_distinct=True,
        ),
        CheckConstraint(_in("periodicity", PERIODICITIES), name="periodicity"),
        CheckConstraint(_in("kind", KINDS), name="kind"),
        CheckConstraint(_in("status", NOTIFICATION_STATUSES), name="status"),
        CheckConstraint("like_count >= 0", name="like_count_nonnegative"),
        Index("ix_notifications_due", "periodicity", "status", "last_update"),
        # A user's timeline: every notification of one user.
        Index("ix_notifications_user_id", "user_id"),
        # Campaign progress finds mailings by content id when campaign_id was not filled.
        Index(
            "ix_notifications_mailing_content",
            "content_id",
            postgresql_where=text("kind = 'mailing'"),
        ),
    )

    notification_id: Mapped[uuid.UUID] = _uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    message_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("messages.message_id", ondelete="CASCADE"), nullable=False
    )
    periodicity: Mapped[str] = mapped_column(String(10), nullable=False)
    last_update: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(
        String(10), nullable=False, default="pending", server_default="pending"
    )

    kind: Mapped[str] = mapped_column(String(10), nullable=False)
    content_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    like_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    campaign_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("campaigns.campaign_id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = _created()

    message: Mapped[Message] = relationship(lazy="joined")


class Delivery(Base):
    """One send of one notification in one period: the idempotency key of a send."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("notification_id", "period_key", name="uq_deliveries_period"),
        CheckConstraint(_in("status", DELIVERY_STATUSES), name="status"),
        Index("ix_deliveries_status_send_at", "status", "send_at"),
        # The portal's search finds a user by the address their mail went to.
        Index("ix_deliveries_email", "email"),
    )

    delivery_id: Mapped[uuid.UUID] = _uuid_pk()
    notification_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("notifications.notification_id", ondelete="CASCADE"), nullable=False
    )
    period_key: Mapped[str] = mapped_column(String(40), nullable=False)
    send_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    # Why `send_at`: the zone, send hour and quiet hours that decided it (the user's timeline).
    send_reason: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(
        String(10), nullable=False, default="scheduled", server_default="scheduled"
    )
    email: Mapped[str | None] = mapped_column(String(320))
    reported_count: Mapped[int] = mapped_column(
        Integer, nullable=False, default=0, server_default="0"
    )
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    # Claims that ended in a provider outage or throttling: they do not count as attempts.
    deferrals: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    # Times a worker gave it back, too late for its send slot (app/delivery/paced.py): bounded,
    # so that a rate above what the workers can do slows sending instead of stopping it.
    late_reslots: Mapped[int] = mapped_column(
        Integer, nullable=False, default=0, server_default="0"
    )
    backend: Mapped[str | None] = mapped_column(String(20))  # which backend sent it
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )

    notification: Mapped[Notification] = relationship()
    # Loaded only when asked for: the state changes above never need the mail.
    content: Mapped[DeliveryContent | None] = relationship(
        back_populates="delivery", uselist=False, passive_deletes=True
    )


class DeliveryContent(Base):
    """The rendered e-mail of one delivery, written when it is planned (and re-planned) only.

    Apart from `deliveries` so the state changes of a send (enqueued, sending, sent) each write a
    narrow row version instead of copying the mail with it.
    """

    __tablename__ = "delivery_contents"

    delivery_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("deliveries.delivery_id", ondelete="CASCADE"), primary_key=True
    )
    subject: Mapped[str | None] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    body_text: Mapped[str | None] = mapped_column(Text)
    headers: Mapped[dict[str, str]] = mapped_column(
        JSONB, nullable=False, default=dict, server_default=text("'{}'::jsonb")
    )

    delivery: Mapped[Delivery] = relationship(back_populates="content")


class DeliveryEvent(Base):
    """One report of the provider on a delivery (delivered, bounced, spam, ...), in order.

    The delivery's `status` holds the latest; these keep the history for the user's timeline.
    """

    __tablename__ = "delivery_events"

    event_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    delivery_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("deliveries.delivery_id", ondelete="CASCADE"), nullable=False, index=True
    )
    status: Mapped[str] = mapped_column(String(10), nullable=False)
    detail: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = _created()


class ReceivedEvent(Base):
    """One input event applied to the database, by its Kafka position: the start of a user's
    timeline. Written in the transaction that applies the event, so it is there exactly once."""

    __tablename__ = "received_events"
    __table_args__ = (Index("ix_received_events_user", "user_id", "received_at"),)

    event_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)  # the event kind
    topic: Mapped[str] = mapped_column(String(249), nullable=False)
    partition: Mapped[int] = mapped_column(Integer, nullable=False)
    offset: Mapped[int] = mapped_column(BigInteger, nullable=False)
    content_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    periodicity: Mapped[str] = mapped_column(String(10), nullable=False)
    received_at: Mapped[datetime] = _created()


class StreamOffset(Base):
    """Highest offset applied to PostgreSQL per consumer group and topic-partition.

    `offset` is NULL while this group has no position of its own (it starts where the Kafka
    consumer group stands). `topic_id` is the Kafka topic id the offsets belong to; a partition
    whose topic was recreated, or that another group applied before, is `blocked_reason` until an
    operator says where to go on (`notify offsets reset`).
    """

    __tablename__ = "stream_offsets"

    group_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    topic: Mapped[str] = mapped_column(String(249), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    offset: Mapped[int | None] = mapped_column(BigInteger)
    topic_id: Mapped[str | None] = mapped_column(String(40))
    blocked_reason: Mapped[str | None] = mapped_column(Text)
    blocked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )


class DeadLetter(Base):
    """An input event that could not be applied: its original bytes, where it came from, why.

    `replay_token` names the event across replays: a replay carries it in a header, and the
    first replayed copy that is applied claims it in `dead_letter_replays`, so publishing a
    replay twice never applies the event twice. A replay that fails again is a new dead letter
    with the same token.
    """

    __tablename__ = "dead_letters"
    __table_args__ = (
        UniqueConstraint(
            "group_id",
            "source_topic",
            "source_partition",
            "source_offset",
            name="uq_dead_letters_source",
        ),
        CheckConstraint(_in("status", DEAD_LETTER_STATUSES), name="status"),
        Index("ix_dead_letters_status_created_at", "status", "created_at"),
        # A user's timeline finds the events refused for them by their Kafka key.
        Index("ix_dead_letters_key", "key"),
    )

    dead_letter_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    group_id: Mapped[str] = mapped_column(String(200), nullable=False)
    source_topic: Mapped[str] = mapped_column(String(249), nullable=False)
    source_partition: Mapped[int] = mapped_column(Integer, nullable=False)
    source_offset: Mapped[int] = mapped_column(BigInteger, nullable=False)
    key: Mapped[bytes | None] = mapped_column(LargeBinary)
    value: Mapped[bytes | None] = mapped_column(LargeBinary)
    reason: Mapped[str] = mapped_column(String(40), nullable=False)
    error: Mapped[str] = mapped_column(Text, nullable=False)
    replay_token: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    status: Mapped[str] = mapped_column(
        String(10), nullable=False, default="dead", server_default="dead"
    )
    replay_count: Mapped[int] = mapped_column(
        Integer, nullable=False, default=0, server_default="0"
    )
    created_at: Mapped[datetime] = _created()
    replayed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DeadLetterReplay(Base):
    """A replayed event that was applied: the claim that keeps a second copy from applying."""

    __tablename__ = "dead_letter_replays"

    replay_token: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    topic: Mapped[str] = mapped_column(String(249), nullable=False)
    partition: Mapped[int] = mapped_column(Integer, nullable=False)
    offset: Mapped[int] = mapped_column(BigInteger, nullable=False)
    applied_at: Mapped[datetime] = _created()


class OptOut(Base):
    """A kind of mail a user turned off through our unsubscribe link or a provider event."""

    __tablename__ = "opt_outs"
    __table_args__ = (CheckConstraint(_in("kind", KINDS), name="kind"),)

    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    kind: Mapped[str] = mapped_column(String(10), primary_key=True)
    source: Mapped[str] = mapped_column(String(40), nullable=False)
    created_at: Mapped[datetime] = _created()


class SuppressedAddress(Base):
    """An address that gets no more mail, why, and since when (app/domain/suppression.py).

    Keyed by the normalised address, whoever's it is: a dead mailbox is dead for every user
    Auth ever gives it to. Removing the row lifts the suppression.
    """

    __tablename__ = "suppressions"
    __table_args__ = (CheckConstraint(_in("reason", SUPPRESSION_REASONS), name="reason"),)

    address: Mapped[str] = mapped_column(String(320), primary_key=True)
    reason: Mapped[str] = mapped_column(String(20), nullable=False)
    detail: Mapped[str | None] = mapped_column(Text)
    # Who said so: the provider (sendgrid, smtp) or the operator's tool (portal, cli, import).
    source: Mapped[str] = mapped_column(String(40), nullable=False)
    first_event_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    last_event_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class SoftBounce(Base):
    """One delivery refused for a while (SendGrid's `blocked` bounce): enough of them within
    SOFT_BOUNCE_WINDOW_DAYS suppress the address. One row per delivery: a webhook's redelivery
    of the same event counts once."""

    __tablename__ = "soft_bounces"
    __table_args__ = (Index("ix_soft_bounces_address_at", "address", "at"),)

    address: Mapped[str] = mapped_column(String(320), primary_key=True)
    delivery_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    detail: Mapped[str | None] = mapped_column(Text)


class SendPacing(Base):
    """The global send rate's state (app/domain/pacing.py): the next free send slot, and how
    many slots the day has handed out. One row, locked by the dispatcher while it hands out
    slots; absent until sending is first paced."""

    __tablename__ = "send_pacing"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    next_slot: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    day: Mapped[date] = mapped_column(Date, nullable=False)
    day_count: Mapped[int] = mapped_column(Integer, nullable=False)


class Preference(Base):
    """How often a recipient wants a kind of mail, chosen on the preference page.

    Planning reads it ahead of the producer's periodicity. Turning a kind off is an opt-out
    (`opt_outs`, source "preferences"); this row keeps the chosen periodicity for when it is
    on. `preference_changes` keeps every choice for the user's timeline.
    """

    __tablename__ = "preferences"
    __table_args__ = (
        CheckConstraint(_in("kind", KINDS), name="kind"),
        CheckConstraint(_in("periodicity", PERIODICITIES), name="periodicity"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    kind: Mapped[str] = mapped_column(String(10), primary_key=True)
    periodicity: Mapped[str] = mapped_column(String(10), nullable=False)
    updated_at: Mapped[datetime] = _created()


class PlanningShard(Base):
    """One shard of a daily or weekly planning run: its id range and how far it got."""

    __tablename__ = "planning_shards"
    __table_args__ = (
        CheckConstraint(_in("status", ("queued", "running", "done", "failed")), name="status"),
        Index("ix_planning_shards_created", "created_at"),
    )

    run_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    shards: Mapped[int] = mapped_column(Integer, nullable=False)
    periodicity: Mapped[str] = mapped_column(String(10), nullable=False)
    # Rows of this periodicity when the run began, divided by the shards: the progress bar's end.
    expected: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    status: Mapped[str] = mapped_column(
        String(10), nullable=False, default="queued", server_default="queued"
    )
    picked: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    scheduled: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    skipped: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    failed: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PreferenceChange(Base):
    """One choice a recipient made on the preference page (kind, and what they chose)."""

    __tablename__ = "preference_changes"
    __table_args__ = (Index("ix_preference_changes_user", "user_id", "at"),)

    change_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    kind: Mapped[str] = mapped_column(String(10), nullable=False)
    choice: Mapped[str] = mapped_column(String(10), nullable=False)
    at: Mapped[datetime] = _created()


class AdminUser(Base):
    """A person who may use the admin portal."""

    __tablename__ = "admin_users"
    __table_args__ = (CheckConstraint(_in("role", PORTAL_ROLES), name="role"),)

    admin_user_id: Mapped[uuid.UUID] = _uuid_pk()
    username: Mapped[str] = mapped_column(String(100), unique=True, nullable=False)
    password_hash: Mapped[str] = mapped_column(String(300), nullable=False)
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    role: Mapped[str] = mapped_column(
        String(10), nullable=False, default="admin", server_default="admin"
    )
    # Sessions carry the version they were started under; raising it (logout, a new password,
    # deactivation) ends every session of the user, including copied cookies.
    session_version: Mapped[int] = mapped_column(
        Integer, nullable=False, default=1, server_default="1"
    )
    created_at: Mapped[datetime] = _created()

    def __str__(self) -> str:
        return self.username


class AuditEntry(Base):
    """Who did what in the portal, and when: every sign-in, change and send, kept for good."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"),)

    audit_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = _created()
    actor: Mapped[str | None] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(40), nullable=False)
    target: Mapped[str] = mapped_column(String(500), nullable=False)
    outcome: Mapped[int] = mapped_column(Integer, nullable=False)
    client: Mapped[str | None] = mapped_column(String(100))
    detail: Mapped[dict[str, object] | None] = mapped_column(JSONB)
