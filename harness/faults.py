"""Faults a test arms on a running harness (``Platform.faults``); test-only, and inert until armed.

The harness consults them at the points where the real event would happen, so everything after
that point runs as it does on SageMaker:

* ``delay_start(seconds, image)``: each container of ``image`` (every image when None) starts that
  much later (``harness.deployment``), so its endpoint stays ``Creating`` or its replacement waits;
* ``vanish(url)``: fetching that artifact answers "no such object" (``harness.artifacts.fetch``),
  as S3 does once the object is deleted (CreateEndpoint fails; an MME ``TargetModel`` invocation gets
  SageMaker's "Failed to download model data" ValidationError);
* ``reject_loads(count)``: the next ``count`` MME loads (``POST /models``) are answered 507 without
  reaching the container (``harness.mme``), so the unload-least-recently-used-and-retry path runs.

Killing an instance needs no switch here: ``RunningContainer.kill`` is the backend's SIGKILL.
The pytest plugin (``harness.pytest_plugin``) clears them after each test.
"""

from __future__ import annotations

import threading


class Faults:
    """Armed faults; tests set them from their own thread while the harness's event loop reads them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._start_delays: dict[str | None, float] = {}
        self._vanished: set[str] = set()
        self._load_rejections = 0

    # -- arming (the test side) -------------------------------------------------------------------
    def delay_start(self, seconds: float, image: str | None = None) -> None:
        """Containers of ``image`` (None: any image) start ``seconds`` later, until ``clear``."""
        with self._lock:
            self._start_delays[image] = seconds

    def vanish(self, url: str) -> None:
        """The artifact at ``url`` (exactly as the harness fetches it) no longer exists, until ``clear``."""
        with self._lock:
            self._vanished.add(url)

    def reject_loads(self, count: int = 1) -> None:
        """The next ``count`` MME model loads are answered 507 (insufficient memory)."""
        with self._lock:
            self._load_rejections += count

    def clear(self) -> None:
        """Disarm every fault."""
        with self._lock:
            self._start_delays.clear()
            self._vanished.clear()
            self._load_rejections = 0

    # -- consulting (the harness side) ----------------------------------------------------------------
    def start_delay_s(self, image: str) -> float:
        """Seconds to hold back the start of a container of ``image`` (0.0 when none is armed)."""
        with self._lock:
            return self._start_delays.get(image, self._start_delays.get(None, 0.0))

    def vanished(self, url: str) -> bool:
        """Whether the artifact at ``url`` has been made to disappear."""
        with self._lock:
            return url in self._vanished

    def take_load_rejection(self) -> bool:
        """True (and one fewer armed) when this load is to be answered 507."""
        with self._lock:
            if self._load_rejections <= 0:
                return False
            self._load_rejections -= 1
            return True
