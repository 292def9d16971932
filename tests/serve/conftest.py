"""Fixtures for the serve contract suite: the engine under test and tiny model artifacts.

Every contract test takes the ``engine`` fixture, so the same suite runs against the native engine
and the multi-model-server compatibility engine. Behaviour an engine cannot match is declared in
``KNOWN_DIFFERENCES`` with its reason and becomes an explicit expected failure (strict), never a skip.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.models import SklearnArtifact, sklearn_artifact

ENGINES = ["native", "mms"]
#: The single-model suite also runs the native engine with SERVE_PREFORK=true (``engine_env``).
SINGLE_MODEL_ENGINES = [*ENGINES, "prefork"]
#: The multi-model suite also runs the native engine with SERVE_MME_POOL=true (``engine_env``).
MULTI_MODEL_ENGINES = [*ENGINES, "pool"]

#: (engine, test name) -> why that engine cannot pass it.
KNOWN_DIFFERENCES: dict[tuple[str, str], str] = {
    # SERVE_ENGINE=mms (multi-model-server 1.1.11); maintained with serve/mms/, see docs/engines.md.
    ("mms", "test_ping_is_not_200_until_the_model_is_loaded"):
        "mms: the port opens only once the model is loaded (servekit loads it before MMS listens), so "
        "/ping is refused, never answered non-200, while model_fn runs; this test counts only answers",
    ("mms", "test_load_failures_are_never_200_and_leave_nothing_registered"):
        "mms: a failed load is answered by MMS's Java front end as 500 'Failed to start workers'; MMS "
        "drops the worker's message, so the user's reason is only in the container log",
    ("mms", "test_507_when_memory_admission_refuses"):
        "mms: MMS interrupts its own unregister after a 507 load reply (WorkLoadManager 'WorkerThread "
        "interrupted during waitFor'); servekit's engine removes the leftover within ~50 ms",
    ("mms", "test_delete_waits_for_in_flight_requests"):
        "mms: DELETE /models kills the model's worker processes at once (destroyForcibly); the "
        "in-flight request fails (500 'Worker died.', or MMS never answers it)",
    # SERVE_PREFORK=true: each worker answers the connections it accepted (serve/prefork.py).
    ("prefork", "test_worker_killed_mid_request_fails_only_that_request"):
        "prefork: the killed worker held the client's connection itself, so the client sees the "
        "connection close with no answer (as with gunicorn's workers); the front replaces the worker",
    ("prefork", "test_requests_spread_over_workers"):
        "prefork: a worker accepts every connection waiting when it looks, so four requests sent at "
        "once may all land on one worker and run one after another (uvicorn --workers does the same)",
    # SERVE_MME_POOL=true: every pool process holds every model (serve/pool.py).
    ("pool", "test_delete_waits_for_in_flight_requests"):
        "pool: the process that answered the request holds the other models too and outlives the "
        "unload (the request is still answered first: tests/serve/test_pool.py)",
    ("pool", "test_twenty_models_memory_is_reported_and_returned"):
        "pool: a model lives in processes that stay, so unloading returns only what the allocator "
        "gives back; a small model costs its bytes, not a process (tests/serve/test_pool.py)",
}
#: Known differences whose failure depends on timing (the xfail is not strict for these).
TIMING_DEPENDENT: set[tuple[str, str]] = {
    # The leftover appears a few ms after the 507 and the engine removes it within ~50 ms; a GET in
    # between fails the test, one after it passes.
    ("mms", "test_507_when_memory_admission_refuses"),
    # Whether one worker takes all four connections depends on when each worker wakes.
    ("prefork", "test_requests_spread_over_workers"),
}


def engine_env(engine: str) -> dict[str, str]:
    """The server's environment for an ``engine`` fixture value."""
    if engine == "prefork":
        return {"SERVE_ENGINE": "native", "SERVE_PREFORK": "true"}
    if engine == "native":  # the front path; unset, single-model mode would be prefork (the default)
        return {"SERVE_ENGINE": "native", "SERVE_PREFORK": "false"}
    if engine == "pool":
        return {"SERVE_ENGINE": "native", "SERVE_MME_POOL": "true"}
    return {"SERVE_ENGINE": engine}


def engine_under_test(request: pytest.FixtureRequest) -> str:
    """``request.param``, marked as an expected failure where ``KNOWN_DIFFERENCES`` says so."""
    name: str = request.param
    key = (name, request.node.originalname)
    reason = KNOWN_DIFFERENCES.get(key)
    if reason:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=key not in TIMING_DEPENDENT))
    return name


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return engine_under_test(request)


@pytest.fixture(params=SINGLE_MODEL_ENGINES)
def single_model_engine(request: pytest.FixtureRequest) -> str:
    return engine_under_test(request)



@pytest.fixture(scope="session")
def iris(tmp_path_factory: pytest.TempPathFactory) -> SklearnArtifact:
    return sklearn_artifact(tmp_path_factory.mktemp("iris") / "model")


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    path = tmp_path / "models"
    path.mkdir()
    return path
