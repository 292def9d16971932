"""serve.memory: the cgroup's limit and working set read from cgroup v2 and v1 files, and which
measure a memory budget applies (the kernel's for a cgroup limit, the tree's PSS otherwise)."""

from __future__ import annotations

from pathlib import Path

import pytest

from serve import memory

MIB = 2**20


def cgroup_files(root: Path, usage: int, stat: dict[str, int], version: int) -> tuple[tuple[str, str, str], ...]:
    """Fake cgroup usage and stat files of ``version`` under ``root``, as memory.py's lookup table."""
    stat_text = "".join(f"{key} {value}\n" for key, value in stat.items())
    if version == 2:
        (root / "memory.current").write_text(f"{usage}\n")
        (root / "memory.stat").write_text(stat_text)
        return ((str(root / "memory.current"), str(root / "memory.stat"), "inactive_file"),)
    (root / "memory.usage_in_bytes").write_text(f"{usage}\n")
    (root / "memory.stat").write_text(stat_text)
    return ((str(root / "memory.usage_in_bytes"), str(root / "memory.stat"), "total_inactive_file"),)


@pytest.mark.parametrize("version, stat", [
    (2, {"anon": 300 * MIB, "inactive_file": 60 * MIB, "active_file": 40 * MIB}),
    (1, {"inactive_file": 1, "total_inactive_file": 60 * MIB, "total_rss": 300 * MIB}),
])
def test_working_set_is_usage_less_inactive_file_pages(tmp_path: Path, version: int, stat: dict[str, int]) -> None:
    files = cgroup_files(tmp_path, 400 * MIB, stat, version)
    assert memory.cgroup_working_set_bytes(files) == 340 * MIB


def test_working_set_unreadable_is_none(tmp_path: Path) -> None:
    missing = ((str(tmp_path / "memory.current"), str(tmp_path / "memory.stat"), "inactive_file"),)
    assert memory.cgroup_working_set_bytes(missing) is None
    (tmp_path / "memory.current").write_text("garbage\n")
    (tmp_path / "memory.stat").write_text("inactive_file 1\n")
    assert memory.cgroup_working_set_bytes(missing) is None


def test_a_configured_limit_is_measured_on_the_process_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "cgroup_limit_bytes", lambda: 100 * MIB)
    budget = memory.memory_budget(250)
    assert budget.limit == 250 * MIB
    assert budget.used is memory.tree_pss_bytes and not budget.measured_cheaply
    assert budget.used() > 0


def test_a_cgroup_limit_is_measured_on_the_cgroup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "cgroup_limit_bytes", lambda: 400 * MIB)
    monkeypatch.setattr(memory, "cgroup_working_set_bytes", lambda: 123 * MIB)
    budget = memory.memory_budget(None)
    assert (budget.limit, budget.used(), budget.measured_cheaply) == (400 * MIB, 123 * MIB, True)
    assert "cgroup" in budget.measure


@pytest.mark.parametrize("limit", [None, 2**63])
def test_no_cgroup_limit_means_physical_memory_measured_machine_wide(
        monkeypatch: pytest.MonkeyPatch, limit: int | None) -> None:
    """No cgroup limit, or v1's "unlimited" (about 2**63): the limit is physical memory and the
    measure is the machine's memory in use, which other processes share."""
    monkeypatch.setattr(memory, "cgroup_limit_bytes", lambda: limit)
    budget = memory.memory_budget(None)
    figures = memory.psutil.virtual_memory()
    assert budget.limit == figures.total
    assert budget.used is memory.machine_used_bytes and budget.measured_cheaply
    assert 0 < budget.used() < figures.total


def test_a_cgroup_limit_whose_usage_is_hidden_is_measured_on_the_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "cgroup_limit_bytes", lambda: 400 * MIB)
    monkeypatch.setattr(memory, "cgroup_working_set_bytes", lambda: None)
    budget = memory.memory_budget(None)
    assert budget.limit == 400 * MIB
    assert budget.used is memory.tree_pss_bytes and not budget.measured_cheaply
