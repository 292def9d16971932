"""The ``context`` argument user scripts receive, shaped like multi-model-server's ``mms.context.Context``.

Scripts written for AWS's sagemaker-inference containers read ``context.system_properties``
(``model_dir``, ``gpu_id``) and request headers via ``context.get_request_header(0, name)``, and set
response headers via ``context.set_response_header(0, name, value)``. Those calls work here unchanged.
servekit adds plain attributes for what SageMaker forwards: ``custom_attributes``, ``target_model``,
``content_type``, ``accept``, and a settable ``response_custom_attributes``.

One ``Context`` is made per request (the load-time context has no request), so concurrent requests
never share response headers. Batches are always of size 1: index 0 is the only valid ``idx``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"
TARGET_MODEL_HEADER = "X-Amzn-SageMaker-Target-Model"


class _Headers(dict[str, str]):
    """A dict whose lookups ignore case (HTTP header names), keeping the spelling first stored."""

    def _key(self, key: str) -> str:
        lowered = key.lower()
        for existing in self:
            if existing.lower() == lowered:
                return existing
        return key

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(self._key(key), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(self._key(key))

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(self._key(key), value)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(self._key(key))


class RequestProcessor:
    """Per-request headers and response status/headers (``mms.context.RequestProcessor``'s methods)."""

    def __init__(self, request_headers: Mapping[str, str]) -> None:
        self._request_headers = _Headers(request_headers)
        self._response_headers = _Headers()
        self._status_code = 200
        self._reason_phrase: str | None = None

    def get_request_property(self, key: str) -> str | None:
        """One request header (case-insensitive), or None."""
        return self._request_headers.get(key)

    def get_request_properties(self) -> dict[str, str]:
        """All request headers."""
        return self._request_headers

    def report_status(self, code: int, reason_phrase: str | None = None) -> None:
        """Set the response status (>= 400 makes the invocation fail with that status)."""
        self._status_code = int(code)
        self._reason_phrase = reason_phrase

    def get_response_status_code(self) -> int:
        """The status set by ``report_status`` (200 by default)."""
        return self._status_code

    def get_response_status_phrase(self) -> str | None:
        """The reason phrase set by ``report_status``."""
        return self._reason_phrase

    def add_response_property(self, key: str, value: str) -> None:
        """Set a response header."""
        self._response_headers[key] = value

    def get_response_headers(self) -> dict[str, str]:
        """All response headers set so far."""
        return self._response_headers

    def get_response_header(self, key: str) -> str | None:
        """One response header (case-insensitive), or None."""
        return self._response_headers.get(key)


class _NullMetrics:
    """Accepts MMS metrics calls (``add_time``, ``add_counter``, ...) and drops them."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("add_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)


class Context:
    """The user-script ``context``: MMS ``Context`` methods plus servekit's request attributes."""

    def __init__(
        self,
        model_name: str,
        model_dir: str,
        gpu_id: int | None = None,
        request_headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
    ) -> None:
        self.model_name = model_name
        self.manifest: dict[str, Any] = {}
        self._system_properties: dict[str, Any] = {
            "model_dir": model_dir,
            "gpu_id": gpu_id,
            "batch_size": 1,
            "server_name": "servekit",
            "server_version": _version(),
        }
        self.request_ids: dict[int, str] | None = {0: request_id} if request_id else None
        self.metrics: Any = _NullMetrics()
        self.request_processor: list[RequestProcessor] | None = (
            [RequestProcessor(request_headers)] if request_headers is not None else None
        )

    # ---- MMS Context API -------------------------------------------------------------------------
    @property
    def system_properties(self) -> dict[str, Any]:
        """``model_dir``, ``gpu_id`` (None on CPU), ``batch_size`` (1), ``server_name``, ``server_version``."""
        return self._system_properties

    def _processor(self, idx: int) -> RequestProcessor:
        if not self.request_processor:
            raise RuntimeError("this context belongs to model loading; there is no request yet")
        return self.request_processor[idx]

    def get_request_id(self, idx: int = 0) -> str | None:
        """The request id, when the server supplied one."""
        return self.request_ids.get(idx) if self.request_ids else None

    def get_request_header(self, idx: int, key: str) -> str | None:
        """A request header by name (case-insensitive)."""
        return self._processor(idx).get_request_property(key)

    def get_all_request_header(self, idx: int) -> dict[str, str]:
        """All request headers."""
        return self._processor(idx).get_request_properties()

    def set_response_content_type(self, idx: int, value: str) -> None:
        """Set the response Content-Type (a ``(bytes, content_type)`` return value still wins)."""
        self.set_response_header(idx, "Content-Type", value)

    def get_response_content_type(self, idx: int) -> str | None:
        """The response Content-Type set so far."""
        return self._processor(idx).get_response_header("Content-Type")

    def get_response_status(self, idx: int) -> tuple[int, str | None]:
        """(status code, reason phrase) set so far."""
        p = self._processor(idx)
        return p.get_response_status_code(), p.get_response_status_phrase()

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        """Set the response status; a code >= 400 turns the invocation into an error with that status."""
        if self.request_processor:
            self.request_processor[idx].report_status(code, reason_phrase=phrase)

    def set_all_response_status(self, code: int = 200, phrase: str = "") -> None:
        """``set_response_status`` for every request in the batch (there is one)."""
        for processor in self.request_processor or []:
            processor.report_status(code, reason_phrase=phrase)

    def get_response_headers(self, idx: int) -> dict[str, str]:
        """All response headers set so far."""
        return self._processor(idx).get_response_headers()

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        """Set a response header; ``X-Amzn-SageMaker-Custom-Attributes`` goes back to the caller."""
        self._processor(idx).add_response_property(key, value)

    # ---- servekit conveniences -------------------------------------------------------------------
    @property
    def model_dir(self) -> str:
        """The extracted artifact directory."""
        return str(self._system_properties["model_dir"])

    @property
    def content_type(self) -> str | None:
        """The request's Content-Type header, verbatim."""
        return self.get_request_header(0, "Content-Type") if self.request_processor else None

    @property
    def accept(self) -> str | None:
        """The request's Accept header, verbatim."""
        return self.get_request_header(0, "Accept") if self.request_processor else None

    @property
    def custom_attributes(self) -> str | None:
        """``X-Amzn-SageMaker-Custom-Attributes`` of the request (``CustomAttributes`` in boto3)."""
        return self.get_request_header(0, CUSTOM_ATTRIBUTES_HEADER) if self.request_processor else None

    @property
    def target_model(self) -> str | None:
        """``X-Amzn-SageMaker-Target-Model`` of the request (the MME ``TargetModel``), for logging."""
        return self.get_request_header(0, TARGET_MODEL_HEADER) if self.request_processor else None

    @property
    def response_custom_attributes(self) -> str | None:
        """Custom attributes to return to the caller (``CustomAttributes`` of the boto3 response)."""
        return self.get_response_headers(0).get(CUSTOM_ATTRIBUTES_HEADER) if self.request_processor else None

    @response_custom_attributes.setter
    def response_custom_attributes(self, value: str) -> None:
        self.set_response_header(0, CUSTOM_ATTRIBUTES_HEADER, value)


@functools.lru_cache(maxsize=1)
def _version() -> str:
    try:
        from importlib.metadata import version

        return version("servekit")
    except Exception:  # noqa: BLE001 - running from a source tree without installed metadata
        return "0"
