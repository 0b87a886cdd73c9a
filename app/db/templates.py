"""E-mail templates in PostgreSQL, keyword-only with an explicit session."""

from __future__ import annotations

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


def get_template_by_name(*, session: Session, name: str) -> Template:
    template = session.scalars(select(Template).where(Template.name == name)).one_or_none()
    if template is None:
        raise LookupError(f"no template named {name!r}; run `notify templates load`")
    return template
