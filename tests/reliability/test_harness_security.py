"""The harness next to a browser: Host allow-list, Origin, admin header, token, JSON 1.1 only, and
TargetModel decoded before it is checked (docs/harness.md, "Security")."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from harness import artifacts
from harness.backends.process import ProcessBackend
from harness.cli import main as servekit
from harness.local import LocalSageMaker
from tests.harness.conftest import FAKE_CONTAINER, IMAGE, boto_clients, deploy, make_tar

JSON_11 = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "SageMaker.ListModels"}


def fake_backend() -> ProcessBackend:
    return ProcessBackend(command=[sys.executable, str(FAKE_CONTAINER)])


@pytest.fixture
def harness(tmp_path: Path):
    with LocalSageMaker(fake_backend(), state_dir=tmp_path / "state", startup_timeout_s=30, stop_grace_s=5,
                        allowed_hosts=("devbox.internal",)) as running:
        yield running


def _denied(answer: httpx.Response, words: str) -> None:
    assert answer.status_code == 403, answer.text
    assert answer.json()["__type"] == "AccessDeniedException" and words in answer.json()["message"]
    assert answer.headers["x-amzn-errortype"] == "AccessDeniedException"


def test_only_loopback_and_allowed_hosts_pass(harness):
    url = harness.endpoint_url
    port = url.rsplit(":", 1)[1]
    for host in ("localhost", f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "devbox.internal:9"):
        answer = httpx.post(url, headers={**JSON_11, "Host": host}, content=b"{}")
        assert answer.status_code == 200, (host, answer.text)
    # DNS rebinding: the browser names the attacker's host; every route refuses it.
    for method, path in (("POST", "/"), ("GET", "/_servekit/endpoints"), ("POST", "/endpoints/x/invocations"),
                         ("POST", "/_servekit/shutdown")):
        answer = httpx.request(method, url + path, headers={**JSON_11, "Host": f"evil.example:{port}",
                                                            "X-Servekit-Admin": "1"}, content=b"{}")
        _denied(answer, "Host 'evil.example:")


def test_browser_origins_and_simple_requests_are_refused(harness):
    url = harness.endpoint_url
    _denied(httpx.post(url, headers={**JSON_11, "Origin": "https://evil.example"}, content=b"{}"),
            "Origin 'https://evil.example'")
    assert httpx.post(url, headers={**JSON_11, "Origin": "http://localhost:3000"}, content=b"{}").status_code == 200
    # The control plane speaks JSON 1.1 only: a form or text/plain POST (no preflight) does nothing.
    answer = httpx.post(url, headers={"X-Amz-Target": "SageMaker.CreateModel", "Content-Type": "text/plain"},
                        content=b'{"ModelName": "m"}')
    assert answer.status_code == 415 and answer.json()["__type"] == "UnsupportedMediaTypeException"
    assert httpx.post(url, headers={"Content-Type": "application/x-amz-json-1.1"}, content=b"{}").status_code == 400
    # The admin API: no state-changing GET, and a POST needs the custom header (a preflight for a page).
    assert httpx.get(url + "/_servekit/shutdown").status_code == 405
    _denied(httpx.post(url + "/_servekit/shutdown"), "X-Servekit-Admin: 1")
    assert harness._server is not None and not harness._server.should_exit
    assert httpx.post(url + "/_servekit/shutdown", headers={"X-Servekit-Admin": "1"}).status_code == 200


def test_token_is_the_access_key_for_boto3_and_a_bearer_for_the_cli(tmp_path, capsys):
    with LocalSageMaker(fake_backend(), state_dir=tmp_path / "state", startup_timeout_s=30, stop_grace_s=5,
                        token="s3cret-token") as running:
        sm, rt = boto_clients(running.endpoint_url)  # access key "testing": not the token
        with pytest.raises(sm.exceptions.ClientError) as caught:
            sm.list_models()
        assert caught.value.response["Error"]["Code"] == "AccessDeniedException"
        assert "requires its token" in caught.value.response["Error"]["Message"]
        with pytest.raises(rt.exceptions.ClientError) as caught:
            rt.invoke_endpoint(EndpointName="ep", Body=b"{}")
        assert caught.value.response["Error"]["Code"] == "AccessDeniedException"
        deploy(running.client("sagemaker"), "ep", PrimaryContainer={"Image": IMAGE})
        assert running.client("sagemaker-runtime").invoke_endpoint(EndpointName="ep", Body=b"{}")["Body"].read()
        url = running.endpoint_url + "/_servekit/endpoints"
        assert httpx.get(url).status_code == 403
        assert httpx.get(url, headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
        # The CLI finds the token in the state dir (written for the owner only).
        assert (tmp_path / "state" / "harness.json").stat().st_mode & 0o077 == 0
        assert servekit(["local", "ls", "--state-dir", str(tmp_path / "state")]) == 0
        assert "ep  InService" in capsys.readouterr().out


# -- TargetModel decoded before validation ---------------------------------------------------------------
ESCAPES = {
    "encoded dots": "%2e%2e/secret.tar.gz",
    "double-encoded dots": "%252e%252e/secret.tar.gz",
    "triple-encoded dots": "%25252e%25252e/secret.tar.gz",
    "mixed case": "%2E%2e/secret.tar.gz",
    "encoded slash": "a%2f..%2f..%2fsecret.tar.gz",
    "backslash": "..\\secret.tar.gz",
    "encoded backslash": "..%5csecret.tar.gz",
    "absolute": "/etc/passwd",
    "encoded absolute": "%2fetc%2fpasswd",
    "drive letter": "C:%5cWindows",
    "NUL": "m.tar.gz%00.txt",
    "control character": "m%0a.tar.gz",
    "bare dots": "%2e%2e",
    "over-encoded": "%2525252e",
}


@pytest.mark.parametrize("prefix", ["file:///srv/models/", "s3://bucket/models/"])
@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_every_encoding_of_an_escape_is_refused(prefix, name):
    with pytest.raises(artifacts.ArtifactError):
        artifacts.join_prefix(prefix, ESCAPES[name])


def test_literal_nul_and_decoded_names_inside_the_prefix():
    with pytest.raises(artifacts.ArtifactError):
        artifacts.join_prefix("s3://b/models/", "m\x00.tar.gz")
    assert artifacts.join_prefix("s3://b/models/", "a%2Fm.tar.gz") == "s3://b/models/a/m.tar.gz"
    assert artifacts.join_prefix("s3://b/models", "a/./m%20x.tar.gz") == "s3://b/models/a/m x.tar.gz"
    assert artifacts.join_prefix("file:///srv/m/", "x%25y.tar.gz") == "file:///srv/m/x%25y.tar.gz"


@pytest.mark.parametrize("scheme", ["file", "s3"])
def test_mme_refuses_escapes_with_a_validation_error_and_reads_nothing(tmp_path, scheme):
    models = tmp_path / "models"
    make_tar(tmp_path / "secret.tar.gz", {"secret.txt": b"outside the prefix"})
    make_tar(models / "ok.tar.gz", {"model.txt": b"inside"})
    prefix = f"file://{models}/" if scheme == "file" else "s3://no-such-bucket/models/"
    with LocalSageMaker(fake_backend(), state_dir=tmp_path / "state", startup_timeout_s=30,
                        stop_grace_s=5) as running:
        sm, rt = boto_clients(running.endpoint_url)
        deploy(sm, "mme", PrimaryContainer={"Image": IMAGE, "Mode": "MultiModel", "ModelDataUrl": prefix})
        for name in sorted(ESCAPES):
            with pytest.raises(rt.exceptions.ValidationError) as caught:
                rt.invoke_endpoint(EndpointName="mme", TargetModel=ESCAPES[name], Body=b"{}")
            assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400, name
        cache = running.platform.store.endpoints["mme"].deployment.all_containers()[0].cache
        assert not cache.loaded and not any(cache.models_dir.iterdir())
        if scheme == "file":
            answer = rt.invoke_endpoint(EndpointName="mme", TargetModel="ok.tar.gz", Body=b"{}")
            assert "model.txt" in answer["Body"].read().decode() and len(cache.loaded) == 1
