"""Fixtures for handler tests (helpers live in tests/handlers/helpers.py)."""

from tests.handlers.helpers import scale_dir

__all__ = ["scale_dir"]
