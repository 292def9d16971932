"""The plugin's tests run team-style test files in pytester directories.

``pytest_plugins = ["pytester"]`` is refused in a conftest below the top level once pytest is
configured (a full-suite run reaches this folder late), so the pytester plugin is registered here
by its hook instead; either way its ``pytester`` fixture is what the tests use.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin("pytester"):
        config.pluginmanager.import_plugin("pytester")
