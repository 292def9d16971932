"""HTTP requests to the container, timed; a request that gets no answer is a result, not an exception."""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

#: How long a probe waits, so that a slow /ping is measured rather than cut at SageMaker's 2 s.
PROBE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Answer:
    """A status (None: no HTTP answer), the seconds it took, the body's start, or why none came."""

    status: int | None
    seconds: float
    body: str = ""
    error: str = ""

    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def describe(self) -> str:
        if self.status is None:
            return f"no answer after {self.seconds:.1f} s ({self.error})"
        snippet = f": {self.body[:160]!r}" if self.body else ""
        return f"{self.status} in {self.seconds:.2f} s{snippet}"


def request(method: str, url: str, *, timeout: float = PROBE_TIMEOUT_S, content: bytes | None = None,
            headers: dict[str, str] | None = None, json: object = None) -> Answer:
    """One request to the container."""
    started = time.monotonic()
    try:
        response = httpx.request(method, url, content=content, headers=headers, json=json,
                                 timeout=httpx.Timeout(timeout, connect=2.0))
    except httpx.HTTPError as exc:
        return Answer(None, time.monotonic() - started, error=f"{type(exc).__name__}: {exc}"[:200])
    return Answer(response.status_code, time.monotonic() - started, response.text[:2000])
