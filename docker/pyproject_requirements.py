"""Print the requirements of servekit's pyproject.toml for the given extras, one per line.

Used inside ``docker build`` so that dependencies are installed in their own cached layer before the
project's source is copied in (a source change then does not re-download the frameworks).
Standard library only: runs in the bare base image's Python (3.11+, ``tomllib``).
"""

from __future__ import annotations

import sys
import tomllib


def requirements(pyproject: str, extras: list[str]) -> list[str]:
    """The core dependencies plus those of each named extra; SystemExit naming an unknown extra."""
    with open(pyproject, "rb") as handle:
        project = tomllib.load(handle)["project"]
    lines = list(project.get("dependencies", []))
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        if extra not in optional:
            raise SystemExit(f"unknown extra {extra!r} in {pyproject}: known {', '.join(sorted(optional))}")
        lines.extend(optional[extra])
    return lines


def main() -> None:
    """``python pyproject_requirements.py PYPROJECT [EXTRA ...]``."""
    if len(sys.argv) < 2:
        raise SystemExit("usage: pyproject_requirements.py PYPROJECT [EXTRA ...]")
    print("\n".join(requirements(sys.argv[1], [e for e in sys.argv[2:] if e])))


if __name__ == "__main__":
    main()
