"""bench/procs.py: the PSS reading waits for a tree that stopped changing."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

from bench import procs


def trees(*pid_sets: tuple[int, ...]) -> Any:
    """A ``list_tree`` that answers each set of PIDs in turn, then the last one for ever."""
    answers = itertools.chain(pid_sets, itertools.repeat(pid_sets[-1]))
    return lambda: [SimpleNamespace(pid=pid) for pid in next(answers)]


def test_a_process_started_after_the_first_look_is_counted() -> None:
    # The native engine forks its spare MME worker after answering a load: the first look misses it.
    settled = procs.settled_tree(trees((1, 2), (1, 2), (1, 2, 3)), quiet_s=0.1, deadline_s=5)
    assert sorted(p.pid for p in settled) == [1, 2, 3]


def test_a_tree_that_never_settles_is_read_at_the_deadline() -> None:
    changing = itertools.count()
    settled = procs.settled_tree(lambda: [SimpleNamespace(pid=next(changing))], quiet_s=0.1, deadline_s=0.3)
    assert len(settled) == 1 and settled[0].pid > 3
