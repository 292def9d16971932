"""AWS's container settings: honoured with AWS's meaning, or the start refused with one line naming it."""

from __future__ import annotations

import pytest

from serve.settings import Settings, SettingsError


@pytest.mark.parametrize("name", ["SAGEMAKER_TFS_NUM_BATCH_THREADS", "SAGEMAKER_TFS_INTRA_OP_PARALLELISM",
                                  "SAGEMAKER_TFS_PAD_VARIABLE_LENGTH_INPUTS", "SAGEMAKER_TS_MIN_WORKERS",
                                  "SAGEMAKER_GUNICORN_WORKERS", "SAGEMAKER_NGINX_PROXY_READ_TIMEOUT_SECONDS"])
def test_an_aws_setting_servekit_does_not_honour_is_refused_in_one_line(name: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({name: "4"})
    assert str(info.value).startswith(f"{name} is not honoured by servekit") and "\n" not in str(info.value)


@pytest.mark.parametrize(("env", "size", "delay_s"), [
    ({"SERVE_BATCH_MAX_SIZE": "16"}, 16, 0.0),
    ({"SERVE_BATCH_MAX_SIZE": "16", "SERVE_BATCH_MAX_DELAY_MS": "2.5"}, 16, 0.0025),
    ({"SERVE_FRAMEWORK": "tensorflow", "SAGEMAKER_TFS_ENABLE_BATCHING": "true"}, 8, 0.001),  # AWS's defaults
    ({"SERVE_FRAMEWORK": "tensorflow", "SAGEMAKER_TFS_ENABLE_BATCHING": "TRUE", "SAGEMAKER_TFS_MAX_BATCH_SIZE": "32",
      "SAGEMAKER_TFS_BATCH_TIMEOUT_MICROS": "500"}, 32, 0.0005),
    ({"SERVE_FRAMEWORK": "pytorch", "SAGEMAKER_TS_BATCH_SIZE": "4"}, 4, 0.1),  # AWS's 100 ms default
    ({"SERVE_FRAMEWORK": "pytorch", "SAGEMAKER_TS_BATCH_SIZE": "4", "SAGEMAKER_TS_MAX_BATCH_DELAY": "5"}, 4, 0.005),
])
def test_batching_settings_are_honoured_with_their_units(env: dict[str, str], size: int, delay_s: float) -> None:
    batching = Settings.from_env(env).batching
    assert batching is not None and (batching.max_size, batching.max_delay_s) == (size, pytest.approx(delay_s))


@pytest.mark.parametrize("env", [
    {}, {"SERVE_BATCH_MAX_SIZE": "1"}, {"SERVE_FRAMEWORK": "tensorflow", "SAGEMAKER_TFS_ENABLE_BATCHING": "false"},
    {"SERVE_FRAMEWORK": "pytorch", "SAGEMAKER_TS_BATCH_SIZE": "1"},  # AWS's default: one request per call
])
def test_batching_is_off_by_default_and_at_size_one(env: dict[str, str]) -> None:
    assert Settings.from_env(env).batching is None


@pytest.mark.parametrize(("env", "named"), [
    ({"SERVE_BATCH_MAX_SIZE": "0"}, "SERVE_BATCH_MAX_SIZE='0' is invalid"),
    ({"SERVE_BATCH_MAX_SIZE": "4", "SERVE_BATCH_MAX_DELAY_MS": "-1"}, "SERVE_BATCH_MAX_DELAY_MS='-1' is invalid"),
    ({"SERVE_BATCH_MAX_DELAY_MS": "5"}, "SERVE_BATCH_MAX_DELAY_MS needs SERVE_BATCH_MAX_SIZE"),
    ({"SERVE_FRAMEWORK": "tensorflow", "SAGEMAKER_TFS_ENABLE_BATCHING": "yes"}, "SAGEMAKER_TFS_ENABLE_BATCHING='yes'"),
    ({"SERVE_FRAMEWORK": "tensorflow", "SAGEMAKER_TFS_MAX_BATCH_SIZE": "8"}, "need SAGEMAKER_TFS_ENABLE_BATCHING=true"),
    ({"SAGEMAKER_TFS_ENABLE_BATCHING": "true"}, "with SERVE_FRAMEWORK=sklearn use SERVE_BATCH_MAX_SIZE"),
    ({"SERVE_FRAMEWORK": "tensorflow", "SAGEMAKER_TS_BATCH_SIZE": "4"}, "AWS's pytorch container's settings"),
    ({"SERVE_FRAMEWORK": "pytorch", "SAGEMAKER_TS_BATCH_SIZE": "4", "SAGEMAKER_MULTI_MODEL": "true"},
     "single-model endpoints only"),
    ({"SERVE_FRAMEWORK": "pytorch", "SAGEMAKER_TS_BATCH_SIZE": "x"}, "SAGEMAKER_TS_BATCH_SIZE='x' is invalid"),
    ({"SERVE_FRAMEWORK": "pytorch", "SAGEMAKER_TS_BATCH_SIZE": "4", "SERVE_BATCH_MAX_SIZE": "4"}, "set one"),
    ({"SERVE_BATCH_MAX_SIZE": "4", "SERVE_ENGINE": "mms"}, "SERVE_BATCH_MAX_SIZE needs SERVE_ENGINE=native"),
    ({"SERVE_FRAMEWORK": "tensorflow", "SAGEMAKER_TFS_ENABLE_BATCHING": "true", "SERVE_ENGINE": "mms"},
     "SAGEMAKER_TFS_ENABLE_BATCHING needs SERVE_ENGINE=native"),
])
def test_batching_that_cannot_be_honoured_is_refused_in_one_line(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    assert named in str(info.value) and "\n" not in str(info.value), str(info.value)
