"""A local SageMaker: control plane and runtime for boto3, running real containers.

``harness.LocalSageMaker`` is the Python API; ``servekit local up`` the command line.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LocalSageMaker"]


def __getattr__(name: str) -> Any:
    # Imported lazily: `import harness` stays cheap (no uvicorn/botocore) until the API is used.
    if name == "LocalSageMaker":
        from harness.local import LocalSageMaker

        return LocalSageMaker
    raise AttributeError(name)
