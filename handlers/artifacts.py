"""Finding the file to load inside an extracted model artifact, shared by every handler."""

from __future__ import annotations

from pathlib import Path

from handlers.errors import ModelLoadError


def only_file(root: Path, patterns: tuple[str, ...], advice: str) -> Path | None:
    """The one file in ``root`` matching any of ``patterns``; None if there is none.

    Several matches are ambiguous: ``ModelLoadError`` lists them, followed by ``advice`` (how to
    name the one to serve).
    """
    found = sorted({p for pattern in patterns for p in root.glob(pattern) if p.is_file()})
    if len(found) > 1:
        kinds = " / ".join(pattern.removeprefix("*") for pattern in patterns)
        raise ModelLoadError(
            f"model artifact {root} has several {kinds} files ({', '.join(p.name for p in found)}); {advice}")
    return found[0] if found else None
