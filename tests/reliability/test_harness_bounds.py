"""Artifact downloads and extraction stay within ArtifactLimits (bytes, files, seconds), checked while
streaming, with one-line errors naming the bound; shown with small configured limits."""

from __future__ import annotations

import http.server
import io
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from harness import artifacts
from harness.artifacts import ArtifactLimitExceeded, ArtifactLimits, Budget
from harness.backends.process import ProcessBackend
from harness.local import LocalSageMaker
from tests.harness.conftest import FAKE_CONTAINER, IMAGE, boto_clients, deploy, make_tar, moto_s3  # noqa: F401

PAYLOAD = b"x" * 10_000


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        if self.path.startswith("/declared"):
            self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        if self.path.startswith("/slow"):
            for _ in range(40):
                self.wfile.write(b"y" * 100)
                self.wfile.flush()
                time.sleep(0.1)
            return
        self.wfile.write(PAYLOAD)  # /undeclared: no Content-Length, the bound is found while streaming


@pytest.fixture
def web() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_https_downloads_are_bounded_in_bytes_and_seconds(web, tmp_path):
    small = Budget(ArtifactLimits(download_bytes=1000))
    for path in ("/declared", "/undeclared"):
        with pytest.raises(ArtifactLimitExceeded, match=r"over the 1000-byte download limit "
                                                         r"\(artifact_limits.download_bytes\)"):
            artifacts.fetch(web + path + "/model.tar.gz", tmp_path / path.strip("/"), budget=small)
        assert not any((tmp_path / path.strip("/")).iterdir())  # the partial file is gone
    started = time.monotonic()
    with pytest.raises(ArtifactLimitExceeded, match=r"took longer than the 1-second limit"):
        artifacts.fetch(web + "/slow", tmp_path / "slow", budget=Budget(ArtifactLimits(seconds=1)))
    assert time.monotonic() - started < 3
    assert artifacts.fetch(web + "/declared", tmp_path / "ok").stat().st_size == len(PAYLOAD)


def test_s3_downloads_are_bounded(moto_s3, tmp_path, monkeypatch):  # noqa: F811 - the fixture
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "local")
    s3 = boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1")
    s3.create_bucket(Bucket="bounded-models")
    s3.put_object(Bucket="bounded-models", Key="m/model.tar.gz", Body=PAYLOAD)
    with pytest.raises(ArtifactLimitExceeded, match="artifact_limits.download_bytes"):
        artifacts.fetch("s3://bounded-models/m/model.tar.gz", tmp_path / "d", s3_endpoint_url=moto_s3,
                        budget=Budget(ArtifactLimits(download_bytes=9_999)))
    fetched = artifacts.fetch("s3://bounded-models/m/model.tar.gz", tmp_path / "e", s3_endpoint_url=moto_s3,
                              budget=Budget(ArtifactLimits(download_bytes=10_000)))
    assert fetched.read_bytes() == PAYLOAD


def _bomb(path: Path, members: int, size: int) -> Path:
    """A tar.gz of ``members`` files of ``size`` zero bytes each: tiny compressed, large extracted."""
    with tarfile.open(path, "w:gz") as tar:
        for index in range(members):
            info = tarfile.TarInfo(f"f{index}")
            info.size = size
            tar.addfile(info, io.BytesIO(bytes(size)))
    return path


def test_extraction_is_bounded_in_files_bytes_and_writes_nothing_over_a_bound(tmp_path):
    many = _bomb(tmp_path / "many.tar.gz", members=50, size=1)
    with pytest.raises(ArtifactLimitExceeded, match=r"more than 10 members \(artifact_limits.files\)"):
        artifacts.extract(many, tmp_path / "a", Budget(ArtifactLimits(files=10)))
    big = _bomb(tmp_path / "big.tar.gz", members=1, size=5 * 2**20)
    assert big.stat().st_size < 20_000
    with pytest.raises(ArtifactLimitExceeded, match=r"more than 1048576 bytes \(artifact_limits.extracted_bytes\)"):
        artifacts.extract(big, tmp_path / "b", Budget(ArtifactLimits(extracted_bytes=2**20)))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    artifacts.extract(many, tmp_path / "c", Budget(ArtifactLimits(files=50)))
    assert len(list((tmp_path / "c").iterdir())) == 50


def test_an_endpoint_over_a_bound_fails_with_the_bound_in_failure_reason(tmp_path):
    archive = _bomb(tmp_path / "model.tar.gz", members=20, size=10)
    backend = ProcessBackend(command=[sys.executable, str(FAKE_CONTAINER)])
    with LocalSageMaker(backend, state_dir=tmp_path / "state", startup_timeout_s=30, stop_grace_s=5,
                        artifact_limits=ArtifactLimits(files=5)) as running:
        sm, rt = boto_clients(running.endpoint_url)
        deploy(sm, "single", wait=False, PrimaryContainer={"Image": IMAGE, "ModelDataUrl": str(archive)})
        deadline = time.monotonic() + 30
        while (described := sm.describe_endpoint(EndpointName="single"))["EndpointStatus"] == "Creating":
            assert time.monotonic() < deadline, "the endpoint neither failed nor came up within 30 s"
            time.sleep(0.1)
        assert described["EndpointStatus"] == "Failed"
        assert "more than 5 members (artifact_limits.files)" in described["FailureReason"]
        make_tar(tmp_path / "mme" / "m.tar.gz", {"a": b"1", "b": b"2"})
        (tmp_path / "mme" / "bomb.tar.gz").write_bytes(archive.read_bytes())
        deploy(sm, "mme", PrimaryContainer={"Image": IMAGE, "Mode": "MultiModel",
                                            "ModelDataUrl": f"file://{tmp_path / 'mme'}/"})
        with pytest.raises(rt.exceptions.ValidationError) as caught:
            rt.invoke_endpoint(EndpointName="mme", TargetModel="bomb.tar.gz", Body=b"{}")
        assert "(artifact_limits.files)" in caught.value.response["Error"]["Message"]
        assert rt.invoke_endpoint(EndpointName="mme", TargetModel="m.tar.gz", Body=b"{}")["Body"].read()
