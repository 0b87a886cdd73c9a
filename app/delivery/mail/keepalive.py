"""Keep-alive HTTP under the official SendGrid client: one connection per worker thread.

The library's HTTP client (python_http_client) opens a new connection, and a new TLS session, for
every request, through a fresh urllib opener. It routes every request through `_make_request(
opener, request)`, a seam it keeps for exactly this (its docstring: "so we can mock it"). We hand
it an opener that sends over a kept connection instead. Everything else is the library's: the
request it builds, its Response, and its exceptions for 4xx/5xx answers (we raise urllib's
HTTPError, which it converts, as it does for urllib's own).

A kept connection the server has closed meanwhile is noticed before it is used (its socket reads
as closed) and replaced, so a request is never sent twice by this layer.

Through a proxy (HTTPS_PROXY and the like) requests go through urllib's own opener, as before.

The library also builds a urllib opener (handler chain, proxy lookup in the environment) for every
request, a tenth of the e-mail worker's CPU; the opener is unused here, so `_request` builds the
request as the library does (python_http_client 3.3.7, pinned in setup.cfg) without it.
"""

from __future__ import annotations

import functools
import http.client
import select
import threading
import time
import urllib.error
import urllib.request
from email.message import Message
from io import BytesIO
from typing import Any
from urllib.parse import urlsplit

import orjson
from python_http_client.client import Client, Response


class _Answer:
    """What python_http_client reads from a urllib response: code, body, headers."""

    def __init__(self, status: int, body: bytes, headers: Message) -> None:
        self.status, self.body, self.headers = status, body, headers

    def getcode(self) -> int:
        return self.status

    def read(self) -> bytes:
        return self.body

    def info(self) -> Message:
        return self.headers


def _closed_by_peer(connection: http.client.HTTPConnection) -> bool:
    """True when the kept socket is gone or reads as closed (an idle timeout on the server)."""
    sock = connection.sock
    if sock is None:
        return True
    poller = select.poll()  # not select(): it fails for descriptors above 1023
    poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))  # a kept-alive socket has nothing to read unless it was closed


# A connection idle longer than this is not reused: a NAT or load balancer may have dropped it
# without a word, and the next request would wait for a timeout to find out.
MAX_IDLE_S = 30.0


def _key(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


def _proxied(url: str) -> bool:
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    return parts.scheme in proxies and not urllib.request.proxy_bypass(parts.hostname or "")


# Whether a host is reached through a proxy, decided once per scheme, host and port: reading the
# proxy settings from the environment for every request was 4% of the e-mail worker's CPU. A
# process reads its proxy environment as it starts, so a change needs a restart (as for urllib).
@functools.lru_cache(maxsize=64)
def _proxied_host(key: tuple[str, str | None, int | None]) -> bool:
    scheme, host, port = key
    return _proxied(f"{scheme}://{host or ''}{'' if port is None else f':{port}'}/")


class KeepAliveOpener:
    """An `opener.open(request, timeout)` over one kept connection per thread and host."""

    def __init__(self) -> None:
        self._local = threading.local()

    def _connection(self, url: str, timeout: float | None) -> http.client.HTTPConnection:
        parts = urlsplit(url)
        key = _key(url)
        kept: dict[tuple[Any, ...], http.client.HTTPConnection] = self._local.__dict__.setdefault(
            "connections", {}
        )
        connection = kept.get(key)
        last_used: dict[tuple[Any, ...], float] = self._local.__dict__.setdefault("last_used", {})
        if connection is not None:
            idle_s = time.monotonic() - last_used.get(key, 0.0)
            try:
                stale = idle_s > MAX_IDLE_S or _closed_by_peer(connection)
            except (OSError, ValueError):
                stale = True
            if stale:
                connection.close()
                connection = None
        if connection is None:
            factory = (
                http.client.HTTPSConnection
                if parts.scheme == "https"
                else http.client.HTTPConnection
            )
            connection = factory(parts.hostname or "", parts.port, timeout=timeout)
            kept[key] = connection
        connection.timeout = timeout
        if connection.sock is not None:
            connection.sock.settimeout(timeout)
        return connection

    def open(self, request: urllib.request.Request, timeout: float | None = None) -> Any:
        url = request.get_full_url()
        if _proxied_host(_key(url)):
            # Through a proxy (HTTPS_PROXY): urllib's own opener, as the library would have used.
            return urllib.request.build_opener().open(request, timeout=timeout)
        connection = self._connection(url, timeout)
        headers = {**request.headers, **request.unredirected_hdrs}
        try:
            connection.request(request.get_method(), request.selector, request.data, headers)
            response = connection.getresponse()
            body = response.read()  # all of it, so the connection can carry the next request
        except BaseException:
            connection.close()  # unknown state: the next request gets a new connection
            raise
        self._local.last_used[_key(url)] = time.monotonic()
        if response.will_close:
            connection.close()
        if not 200 <= response.status < 300:  # as urllib: anything but 2xx is an HTTPError
            raise urllib.error.HTTPError(
                url, response.status, response.reason, response.msg, BytesIO(body)
            )
        return _Answer(response.status, body, response.msg)


class KeepAliveClient(Client):  # type: ignore[misc]  # python_http_client ships no types
    """python_http_client's Client whose requests, and its children's, share kept connections."""

    def __init__(self, *args: Any, opener: KeepAliveOpener | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._opener = opener or KeepAliveOpener()

    def _build_client(self, name: str | None = None) -> KeepAliveClient:
        # The library builds a new Client per URL segment (client.mail.send): keep ours.
        url_path = self._url_path + [name] if name else self._url_path
        return KeepAliveClient(
            host=self.host,
            version=self._version,
            request_headers=self.request_headers,
            url_path=url_path,
            append_slash=self.append_slash,
            timeout=self.timeout,
            opener=self._opener,
        )

    def _make_request(self, opener: Any, request: Any, timeout: float | None = None) -> Any:
        return super()._make_request(self._opener, request, timeout=timeout)

    def __getattr__(self, name: str) -> Any:
        if name in self.methods:
            return lambda **kwargs: self._request(name.upper(), **kwargs)
        return super().__getattr__(name)

    def _request(
        self,
        method: str,
        request_body: Any = None,
        query_params: Any = None,
        request_headers: dict[str, str] | None = None,
        timeout: float | None = None,
        **_: Any,
    ) -> Any:
        """The library's `http_request`, minus the urllib opener it builds and never needs."""
        if request_headers:
            self._update_headers(request_headers)
        data = None
        if request_body is not None:
            content_type = self.request_headers.setdefault("Content-Type", "application/json")
            is_json = content_type == "application/json"
            # orjson: UTF-8 JSON in C; json.dumps was the largest single cost of a send here.
            data = orjson.dumps(request_body) if is_json else request_body.encode("utf-8")
        request = urllib.request.Request(
            self._build_url(query_params), headers=self.request_headers, data=data
        )
        request.get_method = lambda: method  # type: ignore[method-assign]  # as the library does
        return Response(self._make_request(None, request, timeout=timeout))
