"""E-mail templates in PostgreSQL, keyword-only with an explicit session."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.db.models import Template


def upsert_template(
    *, session: Session, name: str, subject: str, body_html: str, body_text: str
) -> Template:
    """Create the template `name`, or replace its subject and bodies."""
    values = {"subject": subject, "body_html": body_html, "body_text": body_text}
    stmt = insert(Template).values(name=name, **values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[Template.name], set_={**values, "updated_at": func.now()}
    )
    session.execute(stmt)
    return get_template_by_name(session=session, name=name)


def get_template(*, session: Session, template_id: uuid.UUID) -> Template | None:
    return session.get(Template, template_id)


def get_template_by_name(*, session: Session, name: str) -> Template:
    template = session.scalars(select(Template).where(Template.name == name)).one_or_none()
    if template is None:
        raise LookupError(f"no template named {name!r}; run `notify templates load`")
    return template


def template_texts(
    *, session: Session, template_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, tuple[str, str, str]]:
    """Subject, HTML body and text body of each template, by id."""
    # On the Core connection: plain rows, read for every batch that planning plans.
    rows = session.connection().execute(
        select(
            Template.template_id, Template.subject, Template.body_html, Template.body_text
        ).where(Template.template_id.in_(list(set(template_ids))))
    )
    return {row[0]: (row[1], row[2], row[3]) for row in rows}
