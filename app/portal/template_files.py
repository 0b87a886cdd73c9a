"""The default e-mail templates shipped in templates/<name>/{subject.txt,body.html,body.txt}."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from app.config import REPO_ROOT
from app.db.templates import upsert_template
from app.domain.rendering import check_template

TEMPLATES_DIR = REPO_ROOT / "templates"


@dataclass(frozen=True, slots=True)
class TemplateSource:
    name: str
    subject: str
    body_html: str
    body_text: str


def read_template_dir(path: Path) -> TemplateSource:
    """Read one template folder; the subject is the file's first line."""
    subject = (path / "subject.txt").read_text(encoding="utf-8").strip()
    return TemplateSource(
        name=path.name,
        subject=subject,
        body_html=(path / "body.html").read_text(encoding="utf-8"),
        body_text=(path / "body.txt").read_text(encoding="utf-8"),
    )


def default_templates(root: Path = TEMPLATES_DIR) -> list[TemplateSource]:
    """Every template folder under `root`, sorted by name."""
    return [read_template_dir(p) for p in sorted(root.iterdir()) if (p / "subject.txt").exists()]


def load_default_templates(*, session: Session, names: Collection[str] | None = None) -> list[str]:
    """Check, then create or replace, the default templates (or only those named); their names.

    What `notify templates load` does, and how tests put the defaults back after changing them.
    """
    sources = [s for s in default_templates() if names is None or s.name in names]
    for source in sources:
        check_template(source.subject, source.body_html, source.body_text)
    for source in sources:
        upsert_template(
            session=session,
            name=source.name,
            subject=source.subject,
            body_html=source.body_html,
            body_text=source.body_text,
        )
    return [source.name for source in sources]
