"""What runs in the child process for one decode bomb: serve one good request, then the bomb, then a
good request again, and report the bomb's status and how far the peak RSS rose above the RSS before.

The peak is ``getrusage(RUSAGE_SELF).ru_maxrss`` (KiB on Linux, getrusage(2)); the baseline is the
resident size just before the bomb (/proc/self/statm). Where the kernel allows, the peak is reset first
(``echo 5 > /proc/self/clear_refs``, proc(5)), else a higher earlier peak makes the figure an upper bound.
"""

from __future__ import annotations

import os
import resource
from contextlib import suppress
from pathlib import Path
from typing import Any

GOOD = b"[[0.5, 1.0, -1.0, 2.0]]"


def _resident_kib() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


def _peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def serve_bomb(model_dir: str, payload_file: str, content_type: str) -> dict[str, Any]:
    from handlers.base import Request
    from handlers.errors import HandlerError
    from handlers.model import ServedModel
    from handlers.sklearn_handler import SklearnHandler

    served = ServedModel.load(SklearnHandler(), model_dir)
    served.invoke(Request(GOOD, "application/json"))
    body = Path(payload_file).read_bytes()
    with suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    before = _resident_kib()
    try:
        served.invoke(Request(body, content_type))
        status, message = 200, ""
    except HandlerError as exc:
        status, message = exc.status, exc.message
    growth_kib = max(0, _peak_kib() - before)
    still_serving = bool(served.invoke(Request(GOOD, "application/json")).body)
    return {"status": status, "message": message, "growth_kib": growth_kib, "still_serving": still_serving}
