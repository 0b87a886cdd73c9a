from app.domain.rendering import SAMPLE_VARIABLES, check_template
from app.portal.template_files import default_templates


def test_default_templates_are_the_three_kinds_and_render() -> None:
    sources = {s.name: s for s in default_templates()}
    assert set(sources) == {"welcome", "likes_digest", "mailing"}
    for source in sources.values():
        email = check_template(source.subject, source.body_html, source.body_text)
        assert "\n" not in email.subject
        assert SAMPLE_VARIABLES["name"] in email.subject
        assert email.html.lstrip().startswith("<!doctype html>")


def test_welcome_carries_the_confirmation_link() -> None:
    welcome = next(s for s in default_templates() if s.name == "welcome")
    link = "https://auth.example.com/confirm?token=a&b=1"
    variables = {**SAMPLE_VARIABLES, "content_value": link}
    email = check_template(welcome.subject, welcome.body_html, welcome.body_text, variables)
    assert link in email.text
    assert 'href="https://auth.example.com/confirm?token=a&amp;b=1"' in email.html
