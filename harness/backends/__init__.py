"""Container backends: how the harness runs a container (``docker`` images or local ``process``es)."""

from __future__ import annotations

from harness.backends.base import Backend, ContainerSpec, RunningContainer


def make_backend(name: str, **options: object) -> Backend:
    """The backend called ``name`` (``process`` or ``docker``)."""
    if name == "process":
        from harness.backends.process import ProcessBackend

        return ProcessBackend(**options)  # type: ignore[arg-type]
    if name == "docker":
        from harness.backends.docker import DockerBackend

        return DockerBackend(**options)  # type: ignore[arg-type]
    raise ValueError(f"unknown backend {name!r}: use 'process' or 'docker'")


__all__ = ["Backend", "ContainerSpec", "RunningContainer", "make_backend"]
