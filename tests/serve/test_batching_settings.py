"""AWS's container settings: honoured with AWS's meaning, or the start refused with one line naming it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from serve.settings import Settings, SettingsError


@pytest.mark.parametrize("name", ["SAGEMAKER_TFS_NUM_BATCH_THREADS", "SAGEMAKER_TFS_INTRA_OP_PARALLELISM",
                                  "SAGEMAKER_TFS_PAD_VARIABLE_LENGTH_INPUTS", "SAGEMAKER_TS_MIN_WORKERS",
                                  "SAGEMAKER_GUNICORN_WORKERS", "SAGEMAKER_NGINX_PROXY_READ_TIMEOUT_SECONDS"])
def test_an_aws_setting_servekit_does_not_honour_is_refused_in_one_line(name: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({name: "4"})
    assert str(info.value).startswith(f"{name} is not honoured by servekit") and "\n" not in str(info.value)


def test_the_refusal_stops_the_server_with_exit_code_2() -> None:
    env = {**os.environ, "SAGEMAKER_TFS_INSTANCE_COUNT": "2"}
    result = subprocess.run([sys.executable, "-m", "serve"], env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert "SAGEMAKER_TFS_INSTANCE_COUNT is not honoured by servekit" in result.stderr
