"""Settings parsed from the environment: a bad value is one line naming the variable, and exit 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from serve.settings import Settings, SettingsError


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "0", "-1", "ten"])
@pytest.mark.parametrize("variable", ["SAGEMAKER_MODEL_SERVER_TIMEOUT", "SAGEMAKER_MAX_PAYLOAD_IN_MB"])
def test_non_finite_or_non_positive_numbers_are_refused(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({variable: value})
    assert str(info.value).startswith(f"{variable}={value!r} is invalid") and "\n" not in str(info.value)


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("SAGEMAKER_MODEL_SERVER_TIMEOUT", "nan", "SAGEMAKER_MODEL_SERVER_TIMEOUT='nan' is invalid: expected a "
                                              "positive, finite number"),
    ("SAGEMAKER_TFS_INSTANCE_COUNT", "2", "SAGEMAKER_TFS_INSTANCE_COUNT is not honoured by servekit"),
])
def test_a_refused_setting_stops_the_server_with_exit_code_2(variable: str, value: str, message: str) -> None:
    env = {**os.environ, variable: value}
    result = subprocess.run([sys.executable, "-m", "serve"], env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr


@pytest.mark.parametrize(("conflict", "named"), [
    ({"SERVE_ENGINE": "mms"}, "SERVE_ENGINE=native"),
    ({"SAGEMAKER_MULTI_MODEL": "true"}, "single-model mode only"),
    ({"SERVE_MAX_IN_FLIGHT_PER_MODEL": "5"}, "SERVE_MAX_IN_FLIGHT_PER_MODEL cannot be honoured"),
])
def test_prefork_with_a_setting_it_cannot_honour_is_refused(conflict: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"SERVE_PREFORK": "true", **conflict})
    assert named in str(info.value) and "\n" not in str(info.value)
    assert Settings.from_env(conflict).prefork is False  # the same settings alone are fine


@pytest.mark.parametrize(("env", "prefork"), [
    ({}, True),  # the default: single-model mode on the native engine
    ({"SERVE_PREFORK": "false"}, False),  # the opt-out
    ({"SERVE_PREFORK": ""}, True),
    ({"SAGEMAKER_MULTI_MODEL": "true"}, False),
    ({"SERVE_ENGINE": "mms"}, False),
    ({"SERVE_MAX_IN_FLIGHT_PER_MODEL": "5"}, False),  # needs the front's queue
    ({"SERVE_BATCH_MAX_SIZE": "8"}, False),
    ({"SERVE_BATCH_MAX_SIZE": "1"}, True),  # 1 is no batching
    ({"SERVE_FRAMEWORK": "tensorflow", "SAGEMAKER_TFS_ENABLE_BATCHING": "true"}, False),
])
def test_prefork_is_the_default_where_nothing_needs_the_front_queue(env: dict[str, str], prefork: bool) -> None:
    assert Settings.from_env(env).prefork is prefork


def test_batching_with_prefork_asked_for_batches_in_each_worker() -> None:
    settings = Settings.from_env({"SERVE_PREFORK": "true", "SERVE_BATCH_MAX_SIZE": "8"})
    assert settings.prefork and settings.batching is not None and settings.batching.max_size == 8


@pytest.mark.parametrize(("env", "level"), [
    ({}, 20),
    ({"SAGEMAKER_TFS_NGINX_LOGLEVEL": "debug"}, 10),  # SDK v2 TensorFlowModel(container_log_level=DEBUG)
    ({"SAGEMAKER_TFS_NGINX_LOGLEVEL": "warn"}, 30),
    ({"SAGEMAKER_TFS_NGINX_LOGLEVEL": "warn", "SAGEMAKER_CONTAINER_LOG_LEVEL": "10"}, 10),
])
def test_aws_tf_serving_log_level_sets_the_server_log_level_unless_servekit_own_is_set(
        env: dict[str, str], level: int) -> None:
    assert Settings.from_env(env).log_level == level


def test_an_unknown_nginx_log_level_is_refused_naming_it() -> None:
    with pytest.raises(SettingsError, match="SAGEMAKER_TFS_NGINX_LOGLEVEL='loud' is invalid"):
        Settings.from_env({"SAGEMAKER_TFS_NGINX_LOGLEVEL": "loud"})
