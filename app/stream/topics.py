"""Every topic the stream worker reads or writes, declared once."""

from __future__ import annotations

from faust.types import TopicT

from app.domain.vocabulary import EventKind
from app.stream.faust_app import app, settings


def _topic(name: str) -> TopicT:
    return app.topic(
        name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.topic_partitions,
    )


user_registered = _topic(settings.topic_user_registered)
comment_liked = _topic(settings.topic_comment_liked)
mailing = _topic(settings.topic_mailing)
dead_letter = _topic(settings.topic_dead_letter)

INPUT_TOPICS: dict[EventKind, TopicT] = {
    "user_registered": user_registered,
    "comment_liked": comment_liked,
    "mailing": mailing,
}
