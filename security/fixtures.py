"""Test data for `make security`, in its scratch database, and the settings that go with it.

    python security/fixtures.py RUN_DIR SCAN_USER PEER_USER

Run with the scratch database's settings (DATABASE_URL, SECRET_KEY) after `notify db upgrade`,
`notify templates load` and the creation of the two portal users. It creates a draft campaign
for the progress API to find, mints an unsubscribe token valid under SECRET_KEY for a made-up
user, and makes the key pair the SendGrid webhook is signed with (the private key in RUN_DIR).
Prints shell assignments for the caller to `eval`.
"""

from __future__ import annotations

import argparse
import base64
import shlex
import sys
import uuid
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from app.config import get_settings
from app.core.clock import utcnow
from app.db import admin_users
from app.db.session import session_scope
from app.db.templates import get_template_by_name
from app.domain.campaigns import Draft, parse_audience
from app.domain.tokens import make_unsubscribe_token
from app.jobs.campaigns import create_campaign


def user_id(username: str) -> str:
    with session_scope() as session:
        user = admin_users.get_by_username(session=session, username=username)
        if user is None:
            raise SystemExit(f"no portal user {username!r}: create it first")
        return str(user.admin_user_id)


def campaign_id() -> str:
    with session_scope() as session:
        template_id = get_template_by_name(session=session, name="mailing").template_id
    recipients = "\n".join(str(uuid.uuid4()) for _ in range(3))
    campaign = create_campaign(
        draft=Draft("Security check", template_id, "A draft the scanners may look at.", "once"),
        audience=parse_audience(recipients),
        created_by="security",
    )
    return str(campaign.campaign_id)


def signing_key(run_dir: Path) -> tuple[Path, str]:
    """A P-256 key pair: the private key's file, and the public key as SendGrid shows it."""
    key = ec.generate_private_key(ec.SECP256R1())
    path = run_dir / "sendgrid-webhook-key.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return path, base64.b64encode(public).decode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("scan_user")
    parser.add_argument("peer_user")
    args = parser.parse_args(argv)
    token = make_unsubscribe_token(
        secret=get_settings().secret_key.get_secret_value(),
        user_id=uuid.uuid4(),
        kind="mailing",
        expires_at=utcnow() + timedelta(days=1),
    )
    key_path, public_key = signing_key(args.run_dir)
    values = {
        "SCAN_USER_ID": user_id(args.scan_user),
        "PEER_USER_ID": user_id(args.peer_user),
        "CAMPAIGN_ID": campaign_id(),
        "UNSUBSCRIBE_TOKEN": token,
        "SENDGRID_PRIVATE_KEY_FILE": str(key_path),
        "SENDGRID_WEBHOOK_PUBLIC_KEY": public_key,
    }
    sys.stdout.write("".join(f"{name}={shlex.quote(value)}\n" for name, value in values.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
