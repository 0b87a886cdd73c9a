import uuid
from datetime import UTC, datetime, timedelta

import pytest

from app.domain.tokens import InvalidToken, make_unsubscribe_token, read_unsubscribe_token

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
USER = uuid.UUID("3f1c1f2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f")


def _token(secret: str = "s3cret", days: int = 30) -> str:
    return make_unsubscribe_token(
        secret=secret, user_id=USER, kind="likes", expires_at=NOW + timedelta(days=days)
    )


def test_round_trip() -> None:
    result = read_unsubscribe_token(secret="s3cret", token=_token(), now=NOW)
    assert (result.user_id, result.kind) == (USER, "likes")


def test_url_safe() -> None:
    token = _token()
    assert all(c.isalnum() or c in "-_." for c in token)


def test_wrong_secret_is_refused() -> None:
    with pytest.raises(InvalidToken, match="signature"):
        read_unsubscribe_token(secret="other", token=_token(), now=NOW)


def test_tampered_payload_is_refused() -> None:
    encoded, signature = _token().split(".")
    forged = make_unsubscribe_token(
        secret="guess", user_id=USER, kind="mailing", expires_at=NOW + timedelta(days=30)
    ).split(".")[0]
    with pytest.raises(InvalidToken, match="signature"):
        read_unsubscribe_token(secret="s3cret", token=f"{forged}.{signature}", now=NOW)


def test_expired_is_refused() -> None:
    with pytest.raises(InvalidToken, match="expired"):
        read_unsubscribe_token(secret="s3cret", token=_token(days=1), now=NOW + timedelta(days=2))


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "!!!.???", "YQ.sig"])
def test_malformed_is_refused(token: str) -> None:
    with pytest.raises(InvalidToken):
        read_unsubscribe_token(secret="s3cret", token=token, now=NOW)


@pytest.mark.parametrize("signature", ["é" * 27, "\udcff" * 27, "ünïcode"])
def test_a_signature_that_is_not_ascii_is_an_invalid_token(signature: str) -> None:
    forged = _token().rsplit(".", 1)[0] + "." + signature
    with pytest.raises(InvalidToken, match="bad signature"):
        read_unsubscribe_token(secret="s3cret", token=forged, now=NOW)
