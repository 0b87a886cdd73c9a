"""Sign in to the portal as a browser does, for the scanners of `make security`.

    python security/login.py BASE_URL USERNAME COOKIE_JSON   (the password on standard input)

Fetches the login form for its CSRF token, posts it with a same-origin Origin header, checks
that the session reaches the admin UI, and writes the session cookie to COOKIE_JSON in
Wapiti's cookie-file format. Prints `name=value` of the cookie (for a Cookie header).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

import requests

from app.portal.admin import SESSION_COOKIE

TOKEN_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def login(base_url: str, username: str, password: str) -> str:
    """The value of a fresh session cookie of `username`."""
    with requests.Session() as http:
        form = http.get(f"{base_url}/login", timeout=10)
        form.raise_for_status()
        found = TOKEN_FIELD.search(form.text)
        if found is None:
            raise SystemExit("login: no csrf_token field in the login form")
        response = http.post(
            f"{base_url}/login",
            data={
                "csrf_token": found.group(1),
                "next": "/admin/",
                "username": username,
                "password": password,
            },
            headers={"Origin": base_url},
            allow_redirects=False,
            timeout=30,
        )
        if response.status_code != 303:
            raise SystemExit(f"login: refused with {response.status_code}: {response.text[:200]}")
        cookie = http.cookies.get(SESSION_COOKIE)
        if not cookie:
            raise SystemExit("login: no session cookie was set")
        check = http.get(f"{base_url}/admin/mailings", allow_redirects=False, timeout=10)
        if check.status_code != 200:
            raise SystemExit(
                f"login: the session does not reach the admin UI ({check.status_code})"
            )
        return cookie


def wapiti_cookies(base_url: str, value: str) -> dict[str, object]:
    host = urlsplit(base_url).hostname or "127.0.0.1"
    attributes = {"value": value, "expires": None, "secure": False, "port": None, "version": 0}
    return {host: {"/": {SESSION_COOKIE: attributes}}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_url")
    parser.add_argument("username")
    parser.add_argument("cookie_json", type=Path)
    args = parser.parse_args(argv)
    base_url = args.base_url.rstrip("/")
    value = login(base_url, args.username, sys.stdin.readline().rstrip("\n"))
    args.cookie_json.write_text(json.dumps(wapiti_cookies(base_url, value), indent=2) + "\n")
    sys.stdout.write(f"{SESSION_COOKIE}={value}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
