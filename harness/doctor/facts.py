"""SageMaker's numbers and messages the doctor checks against; "contract §N" is docs/sagemaker-contract.md.

Numbers the harness already declares are taken from ``HarnessConfig``'s defaults, not repeated.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from harness.config import HarnessConfig

_HARNESS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(HarnessConfig)}

#: The start-up health-check window when a variant sets none (contract §1.3: 4 minutes).
STARTUP_TIMEOUT_S: float = float(_HARNESS["startup_timeout_s"])
#: "The request timeout on /ping attempts is 2 seconds" (contract §1.3).
PING_TIMEOUT_S: float = float(_HARNESS["ping_timeout_s"])
#: Containers must answer an invocation within 60 s (contract §1.3).
INVOCATION_TIMEOUT_S: float = float(_HARNESS["invocation_timeout_s"])
#: Real-time request body limit, 6 MiB (contract §1.5).
MAX_PAYLOAD_BYTES: int = int(_HARNESS["max_payload_bytes"])
#: SIGTERM, then SIGKILL 30 seconds later (contract §1.1).
STOP_GRACE_S = 30.0
#: "Image size N is greater than supported size 10737418240" (contract §1.9): 10 GiB.
IMAGE_SIZE_LIMIT_GIB = 10.0

#: The FailureReason of an endpoint whose container never passes /ping (contract §1.3).
PING_FAILURE = ("CreateEndpoint fails: \"The primary container for production variant AllTraffic did not pass "
                "the ping health check. Please check CloudWatch logs for this endpoint.\" (contract §1.3)")
#: What InvokeEndpoint raises when the container answers 4xx/5xx (contract §1.6).
MODEL_ERROR = ("InvokeEndpoint raises ModelError: \"Received {kind} error ({status}) from primary with message "
               "\\\"...\\\"\" (contract §1.6)")
#: Image size at CreateEndpoint (contract §1.9).
IMAGE_TOO_BIG = "CreateEndpoint fails: \"Image size {size} is greater than supported size {limit}\" (contract §1.9)"
#: An image for another CPU architecture (contract §1.9).
EXEC_FORMAT = ("the container cannot start (\"exec format error\" in CloudWatch), then " + PING_FAILURE)
#: An MME load may take this long before SageMaker gives up (contract §2.2, step 8).
MODEL_LOAD_TIMEOUT_S: float = float(_HARNESS["model_load_timeout_s"])
