"""The default e-mail templates shipped in templates/<name>/{subject.txt,body.html,body.txt}."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.config import REPO_ROOT

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
