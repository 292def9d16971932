"""servekit's pytest plugin: test a SageMaker serving image against a local SageMaker (docs/testing.md).

Registered by the ``pytest11`` entry point, so ``pip install servekit[harness]`` loads it. Importing
this module imports only pytest and ``harness.testing`` (standard library only at import); the harness
itself is imported when a fixture is first used, so a run that uses none of the fixtures below pays
nothing and sees no change.

Fixtures (all named ``servekit_*``):

* ``servekit_sagemaker`` (session): a running ``harness.LocalSageMaker``; backend from
  ``--servekit-backend`` or the ``servekit_backend`` ini setting: ``docker``, ``process`` or ``auto``
  (docker when an engine answers, else process; the choice is printed). A backend asked for by name
  that cannot run fails the tests that use it, with one line; it never falls back.
* ``servekit_endpoint``: deploys an image + model data as a single-model, MME or serial-pipeline
  endpoint (``harness.testing.EndpointFactory``) and deletes it after the test.
* ``servekit_faults``: the harness's fault switches (``harness.faults.Faults``), cleared after the test.
* ``servekit_doctor``: ``servekit doctor`` as a function: ``servekit_doctor(image, **DoctorOptions)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from harness.testing import BACKENDS

if TYPE_CHECKING:
    from harness.faults import Faults
    from harness.local import LocalSageMaker
    from harness.testing import EndpointFactory

#: How often the plugin's harness checks its containers: a killed instance is replaced within about a
#: second plus its start, instead of HarnessConfig's 5 s.
HEALTH_CHECK_INTERVAL_S = 1.0


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--servekit-backend`` and its ini twin ``servekit_backend``."""
    help_text = ("servekit: the local SageMaker's container backend: docker, process, or auto (docker when a "
                 "Docker engine answers, else process)")
    parser.getgroup("servekit").addoption("--servekit-backend", choices=BACKENDS,
                                          default=None, help=help_text + "; default: the servekit_backend ini "
                                          "setting, else auto")
    parser.addini("servekit_backend", help=help_text, default="auto")


def _requested_backend(config: pytest.Config) -> str:
    return str(config.getoption("servekit_backend") or config.getini("servekit_backend") or "auto")


def _say(config: pytest.Config, line: str) -> None:
    """One line on the terminal while a fixture sets up: output capture is suspended for it, as
    pytest's own live logging does (``CaptureManager.global_and_fixture_disabled``)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    if capture is None:
        reporter.write_line(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(line)


@pytest.fixture(scope="session")
def servekit_sagemaker(request: pytest.FixtureRequest,
                       tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSageMaker]:
    """A local SageMaker for the whole session, on 127.0.0.1; stopped (every container with it) at the end."""
    from harness.local import LocalSageMaker
    from harness.testing import BackendUnavailable, choose_backend

    try:
        backend, why = choose_backend(_requested_backend(request.config))
    except BackendUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    harness = LocalSageMaker(backend, state_dir=tmp_path_factory.mktemp("servekit"),
                             health_check_interval_s=HEALTH_CHECK_INTERVAL_S)
    with harness:
        _say(request.config, f"servekit: local SageMaker on {harness.endpoint_url}, backend {backend} ({why})")
        yield harness


@pytest.fixture
def servekit_faults(servekit_sagemaker: LocalSageMaker) -> Iterator[Faults]:
    """The harness's fault switches (delay_start, vanish, reject_loads); every one cleared after the test."""
    faults = servekit_sagemaker.platform.faults
    yield faults
    faults.clear()


@pytest.fixture
def servekit_endpoint(servekit_sagemaker: LocalSageMaker, servekit_faults: Faults) -> Iterator[EndpointFactory]:
    """``servekit_endpoint(image, model_data, mme=False, pipeline=(), environment=None, ...)`` deploys an
    endpoint and returns a ``harness.testing.Endpoint``; every one is deleted after the test."""
    from harness.testing import EndpointFactory

    factory = EndpointFactory(servekit_sagemaker)
    yield factory
    factory.close()


@pytest.fixture
def servekit_doctor() -> Callable[..., Any]:
    """``servekit_doctor(image, **options)`` runs ``servekit doctor`` on ``image`` (``options``: the fields of
    ``harness.doctor.DoctorOptions``) and returns its ``DoctorReport`` (``.ok``, ``.checks``, ``.table()``)."""

    def run(image: str, **options: Any) -> Any:
        from harness.doctor import DoctorOptions, run_doctor

        return run_doctor(image, DoctorOptions(**options))

    return run
