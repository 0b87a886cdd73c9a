"""Write the OpenAPI description of the portal's public and JSON endpoints to a file.

The portal serves no schema (`openapi_url=None`): this builds it from the routes that are in
the schema (`include_in_schema=True`), for `make security` to test the running portal with.

    python security/openapi.py OUT.json [--example NAME=VALUE ...]

`--example` gives every parameter NAME the example VALUE: an existing campaign's id, a valid
unsubscribe token, so that the tests also reach what exists and what is accepted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fastapi.openapi.utils import get_openapi

from app.portal.admin import SESSION_COOKIE
from app.portal.app import create_app
from app.portal.session_guard import API_PREFIX

# Every route under API_PREFIX needs a live portal session (session_guard.LoginRequiredMiddleware).
SESSION_SCHEME = "portalSession"
# What the schema must describe, no more and no less: the public and the JSON endpoints.
EXPECTED = {
    ("post", "/webhooks/sendgrid"),
    ("get", "/unsubscribe"),
    ("post", "/unsubscribe"),
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/admin/api/mailings/{campaign_id}/progress"),
}


def portal_schema(examples: dict[str, str]) -> dict[str, Any]:
    app = create_app()
    schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    schema.setdefault("components", {})["securitySchemes"] = {
        SESSION_SCHEME: {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE}
    }
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            if path.startswith(API_PREFIX):
                operation["security"] = [{SESSION_SCHEME: []}]
            for parameter in operation.get("parameters", []):
                if parameter["name"] in examples:
                    parameter["example"] = examples[parameter["name"]]
    return schema


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--example", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    examples = dict(example.split("=", 1) for example in args.example)
    schema = portal_schema(examples)
    found = {(method, path) for path, ops in schema["paths"].items() for method in ops}
    if found != EXPECTED:
        sys.stderr.write(
            f"the schema's operations are not the public and API ones:\n"
            f"  missing: {sorted(EXPECTED - found)}\n  unexpected: {sorted(found - EXPECTED)}\n"
        )
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(schema, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
