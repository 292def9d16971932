"""Each decode bomb, sent to a fresh worker process serving a tiny scikit-learn model, is refused with
its typed 4xx before the memory is allocated: the worker's peak RSS grows by at most
``MAX_GROWTH_MIB`` and it serves the next request."""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

import pytest

from tests.reliability.bomb_worker import serve_bomb
from tests.reliability.bombs import BOMBS, Bomb
from tests.reliability.models import write_classifier

#: Far below every bomb's naive allocation (1 GiB to 8 TB) and below the 96 MiB decoded-size cap.
MAX_GROWTH_MIB = 48


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every bomb's result, each from its own forked child (forked after scikit-learn is imported here,
    so a child starts warm; ``maxtasksperchild=1``: no child sees two bombs)."""
    import sklearn.linear_model  # noqa: F401 - imported before forking
    root = tmp_path_factory.mktemp("bombs")
    model_dir = write_classifier(root / "model")
    payloads = []
    for number, bomb in enumerate(BOMBS):
        path = root / f"payload-{number}"
        path.write_bytes(bomb.build())
        payloads.append(path)
    jobs = [(str(model_dir), str(path), bomb.content_type) for path, bomb in zip(payloads, BOMBS, strict=True)]
    context = multiprocessing.get_context("fork")
    with context.Pool(min(4, os.cpu_count() or 2), maxtasksperchild=1) as pool:
        results = pool.starmap(serve_bomb, jobs, chunksize=1)
    return {bomb.name: result for bomb, result in zip(BOMBS, results, strict=True)}


@pytest.mark.parametrize("bomb", BOMBS, ids=[b.name for b in BOMBS])
def test_bomb_is_refused_with_bounded_memory(
    bomb: Bomb, outcomes: dict[str, dict[str, Any]], bomb_report: list[tuple[str, int, float]]
) -> None:
    outcome = outcomes[bomb.name]
    growth_mib = outcome["growth_kib"] / 1024
    bomb_report.append((bomb.name, outcome["status"], growth_mib))
    print(f"{bomb.name}: {outcome['status']} {outcome['message']!r}; peak RSS growth {growth_mib:.1f} MiB")
    assert outcome["status"] == bomb.status, outcome["message"]
    assert "\n" not in outcome["message"] and outcome["message"]
    assert growth_mib <= MAX_GROWTH_MIB
    assert outcome["still_serving"]
