"""Who may talk to the harness: a guard in front of every route (docs/harness.md, "Security").

The harness listens on loopback, next to the developer's browser. A web page can reach loopback too:
through DNS rebinding (a name the page controls that resolves to 127.0.0.1, so the browser sends
``Host: evil.example``) and through cross-origin "simple" requests. ``RequestGuard`` answers 403 with
an AWS-shaped ``AccessDeniedException`` unless

* ``Host`` names loopback (``localhost``, ``127.0.0.1``, ``[::1]``, any port) or a host the user allowed
  (``HarnessConfig.allowed_hosts``, ``servekit local up --allow-host``);
* an ``Origin`` header, which browsers send and boto3 never does, names such a host too;
* a POST to the admin API (``/_servekit/...``) carries ``X-Servekit-Admin: 1``, a custom header no page
  can send cross-origin without a CORS preflight (which the harness never grants);
* with a token configured (``HarnessConfig.token``), the request carries it: as the access key id of
  its SigV4 ``Authorization`` header (boto3 and the SDK, with ``AWS_ACCESS_KEY_ID=<token>``) or as
  ``Authorization: Bearer <token>`` (the ``servekit local`` CLI, curl).

The control plane additionally requires AWS's JSON 1.1 protocol (``X-Amz-Target`` and
``Content-Type: application/x-amz-json-1.1``, harness.app), which also needs a preflight.
"""

from __future__ import annotations

import hmac
import json
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
#: The header (value ``1``) every state-changing admin request carries.
ADMIN_HEADER = "X-Servekit-Admin"
#: Where ``servekit local`` reads the token when ``--token`` is not given.
TOKEN_ENV = "SERVEKIT_LOCAL_TOKEN"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def host_name(value: str) -> str:
    """``Host`` (or a URL's netloc) without its port, lower-cased; ``[::1]:8181`` -> ``::1``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    return value.rpartition(":")[0] if value.count(":") == 1 else value


def bearer_or_sigv4_key(authorization: str) -> str:
    """The credential a request presents: a bearer token, or a SigV4 signature's access key id."""
    if authorization.startswith("Bearer "):
        return authorization[len("Bearer "):].strip()
    _, found, rest = authorization.partition("Credential=")
    return rest.partition("/")[0] if found else ""


class RequestGuard:
    """ASGI middleware: refuse requests from anywhere but the developer's own tools (module docstring)."""

    def __init__(self, app: ASGIApp, allowed_hosts: tuple[str, ...] = (), token: str | None = None) -> None:
        self.app = app
        self.hosts = frozenset((*LOOPBACK_HOSTS, *(host_name(h) for h in allowed_hosts)))
        self.token = token

    def refusal(self, method: str, path: str, headers: dict[str, str]) -> str | None:
        """Why this request is refused, in one line; None when it may pass."""
        host = headers.get("host", "")
        if host_name(host) not in self.hosts:
            return (f"Host {host!r} is not allowed: the local harness answers only loopback names and the "
                    "hosts given with --allow-host (a guard against DNS rebinding).")
        origin = headers.get("origin")
        if origin is not None and host_name(urllib.parse.urlsplit(origin).netloc) not in self.hosts:
            return f"Origin {origin!r} is not allowed: web pages may not drive the local harness."
        if method == "POST" and path.startswith("/_servekit/") and headers.get(ADMIN_HEADER.lower()) != "1":
            return f"Admin requests must carry the header {ADMIN_HEADER}: 1 (use the servekit local CLI)."
        if self.token is not None:
            presented = bearer_or_sigv4_key(headers.get("authorization", ""))
            if not hmac.compare_digest(presented.encode(), self.token.encode()):
                return ("This local harness requires its token: use it as AWS_ACCESS_KEY_ID (boto3, the SDK) "
                        f"or set {TOKEN_ENV} (servekit local).")
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            reason = self.refusal(scope["method"], scope["path"], headers)
            if reason is not None:
                await _forbid(send, reason)
                return
        await self.app(scope, receive, send)


async def _forbid(send: Send, reason: str) -> None:
    """403 in a shape both botocore protocols parse: JSON 1.1 ``__type`` and rest-json's header."""
    body = json.dumps({"__type": "AccessDeniedException", "message": reason}).encode()
    await send({"type": "http.response.start", "status": 403, "headers": [
        (b"content-type", b"application/x-amz-json-1.1"), (b"x-amzn-errortype", b"AccessDeniedException"),
        (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
