"""``servekit local up`` in the foreground, a user's AWS script run unchanged against it, then the
``ls`` / ``logs`` / ``metrics`` / ``down`` subcommands; artifacts come from a moto S3 server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import boto3
import numpy as np
import psutil

from harness.backends.base import free_port
from harness.state import read_state_file
from tests.harness.test_sklearn_process import tar_dir
from tests.support.models import sklearn_artifact

SCRIPT = Path(__file__).with_name("user_script_sklearn.py")


def servekit(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", "local", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_user_script_runs_unchanged_against_servekit_local_up(tmp_path, moto_s3):
    env = {**os.environ, "AWS_ENDPOINT_URL_S3": moto_s3, "AWS_ACCESS_KEY_ID": "local",
           "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1"}
    env.pop("AWS_PROFILE", None)
    iris = sklearn_artifact(tmp_path / "iris")
    s3 = boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1", aws_access_key_id="local",
                      aws_secret_access_key="local")
    s3.create_bucket(Bucket="my-models")
    s3.upload_file(str(tar_dir(iris.path, tmp_path / "model.tar.gz")), "my-models", "iris/model.tar.gz")

    state_dir = tmp_path / "state"
    port = free_port()
    log_path = tmp_path / "up.log"
    with open(log_path, "wb") as log:
        up = subprocess.Popen([sys.executable, "-m", "harness.cli", "local", "up", "--port", str(port), "--backend",
                               "process", "--state-dir", str(state_dir)], env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while read_state_file(state_dir) is None:
            assert up.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "servekit local up did not start within 60 s"
            time.sleep(0.1)
        url = read_state_file(state_dir)["url"]
        assert url == f"http://127.0.0.1:{port}"
        banner = log_path.read_text()
        assert f"export AWS_ENDPOINT_URL_SAGEMAKER={url}" in banner and "boto3.client(\"sagemaker\"" in banner

        user_env = {**env, "AWS_ENDPOINT_URL_SAGEMAKER": url, "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": url}
        result = subprocess.run([sys.executable, str(SCRIPT)], env=user_env, capture_output=True, text=True,
                                timeout=300, check=False)
        assert result.returncode == 0, result.stderr + log_path.read_text()
        variant, _, body = result.stdout.strip().partition(" ")
        assert variant == "AllTraffic"
        import joblib

        model = joblib.load(iris.path / "model.joblib")
        expected = model.predict(np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])).tolist()
        answer = json.loads(body.replace("'", '"'))
        predictions = answer["predictions"] if isinstance(answer, dict) else answer
        assert [float(x) for x in predictions] == [float(x) for x in expected]

        listing = servekit("ls", "--state-dir", str(state_dir), env=env)
        assert listing.returncode == 0, listing.stderr
        assert "iris  InService  config=iris" in listing.stdout
        pid = int(re.search(r"pid (\d+)", listing.stdout).group(1))
        assert psutil.pid_exists(pid)

        logs = servekit("logs", "iris", "--container", "primary", "--state-dir", str(state_dir), env=env)
        assert logs.returncode == 0 and "==> AllTraffic/i-" in logs.stdout
        metrics = servekit("metrics", "iris", "--state-dir", str(state_dir), env=env)
        assert metrics.returncode == 0 and "Invocations" in metrics.stdout and "ModelLatency" in metrics.stdout
        missing = servekit("metrics", "iris", "--url", "http://127.0.0.1:1", env=env)
        assert missing.returncode != 0 and "Traceback" not in missing.stderr

        down = servekit("down", "--state-dir", str(state_dir), env=env)
        assert down.returncode == 0, down.stderr
        assert up.wait(timeout=60) == 0
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert "all containers stopped" in log_path.read_text()
        assert read_state_file(state_dir) is None
    finally:
        if up.poll() is None:
            up.terminate()
            up.wait(timeout=60)


def test_sigterm_stops_every_container(tmp_path):
    import signal

    from tests.harness.conftest import boto_clients, deploy

    iris = sklearn_artifact(tmp_path / "iris")
    state_dir = tmp_path / "state"
    log_path = tmp_path / "up.log"
    with open(log_path, "wb") as log:
        up = subprocess.Popen([sys.executable, "-m", "harness.cli", "local", "up", "--port", str(free_port()),
                               "--backend", "process", "--state-dir", str(state_dir)], stdout=log,
                              stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while read_state_file(state_dir) is None:
            assert up.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        sm, _ = boto_clients(read_state_file(state_dir)["url"])
        deploy(sm, "a", PrimaryContainer={"Image": "servekit-sklearn", "ModelDataUrl": str(iris.path)})
        listing = servekit("ls", "--state-dir", str(state_dir), env=dict(os.environ))
        pid = int(re.search(r"pid (\d+)", listing.stdout).group(1))
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=60) == 0, log_path.read_text()
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert read_state_file(state_dir) is None
    finally:
        if up.poll() is None:
            up.kill()
            up.wait(timeout=30)
