"""Hypothesis fuzzing of the /models API arguments against one running native server (multi-model
mode): query parameters, POST /models fields of every JSON type, and model names in paths. Only 2xx
or 4xx may come back, never a 5xx, and the server still answers /ping afterwards.

Budget: ``FUZZ_EXAMPLES`` examples per test (150, derandomized, so CI is reproducible);
``SERVEKIT_RELIABILITY_LONG=1`` raises it to 2000 with random seeds.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.models import sklearn_artifact
from tests.support.server import run_server

LONG = os.environ.get("SERVEKIT_RELIABILITY_LONG") == "1"
FUZZ = settings(max_examples=2000 if LONG else 150, deadline=None, derandomize=not LONG, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

#: Any JSON value a client may put in a field.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=5)
#: Numbers as a client might spell them, including digits ``int`` refuses ("²", "٣") and huge ones.
NUMBER_TEXT = st.text(alphabet="0123456789²³٣९０１ -+.eE\x00", max_size=30) | st.integers().map(str)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, Path]]:
    """A client of the module's server (one per module) and a loadable model directory."""
    artifact = sklearn_artifact(tmp_path_factory.mktemp("fuzz") / "model")
    env = {"SERVE_ENGINE": "native", "SERVE_FRAMEWORK": "sklearn", "SAGEMAKER_MULTI_MODEL": "true"}
    with run_server(env) as running, httpx.Client(base_url=running.url, timeout=120) as client:
        yield client, artifact.path
        assert client.get("/ping").status_code == 200


#: The one 5xx a POST /models may answer for hostile arguments: the url names a directory that exists
#: but holds no artifact (e.g. /proc/self), which is a load failure, not a refused argument.
LOAD_FAILURE = "has no model.joblib"


def assert_typed(response: httpx.Response, load: bool = False) -> None:
    load_failure = load and response.status_code == 500 and LOAD_FAILURE in response.text
    assert response.status_code < 500 or load_failure, f"{response.status_code} {response.text[:300]}"
    if response.status_code >= 400 and response.headers.get("content-type") == "application/json":
        message = response.json()["message"]  # (an unrouted path gets Starlette's plain-text 404)
        assert "\n" not in message and "Traceback" not in message


@FUZZ
@given(limit=st.none() | NUMBER_TEXT | st.text(), token=st.none() | NUMBER_TEXT | st.text())
def test_list_models_query(server: tuple[httpx.Client, Path], limit: str | None, token: str | None) -> None:
    params = {key: value for key, value in (("limit", limit), ("next_page_token", token)) if value is not None}
    assert_typed(server[0].get("/models", params=params))


@FUZZ
@given(name=JSON_VALUES, url=JSON_VALUES | st.sampled_from(["/nonexistent", "", "/proc/self"]),
       workers=st.none() | JSON_VALUES | NUMBER_TEXT, in_query=st.booleans())
def test_load_model_fields(server: tuple[httpx.Client, Path], name: Any, url: Any, workers: Any,
                           in_query: bool) -> None:
    spec = {"model_name": name, "url": url, "initial_workers": workers}
    if in_query:  # multi-model-server's register API takes them as query parameters
        params = {key: str(value) for key, value in spec.items() if value is not None}
        response = server[0].post("/models", params=params)
    else:
        response = server[0].post("/models", json=spec)
    assert_typed(response, load=True)


@FUZZ
@given(name=st.text(min_size=1, max_size=300), workers=st.none() | st.integers(-2, 3) | st.booleans())
def test_load_describe_invoke_unload_names(server: tuple[httpx.Client, Path], name: str, workers: Any) -> None:
    client, model = server
    response = client.post("/models", json={"model_name": name, "url": str(model), "initial_workers": workers})
    assert_typed(response)
    path = "/models/" + quote(name, safe="")
    assert_typed(client.get(path))
    assert_typed(client.post(path + "/invoke", json=[[1, 2, 3, 4]]))
    if response.status_code == 200:
        assert client.delete(path).status_code == 200
