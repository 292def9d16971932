"""Errors the harness answers with, in the exact wire shapes botocore parses.

Two protocols, two shapes (docs/sagemaker-contract.md §5.4, §6.1):

* control plane (JSON 1.1): HTTP 400 with body ``{"__type": "<Code>", "message": "..."}``;
* runtime (rest-json): the error code in the ``x-amzn-ErrorType`` header, the message in the body's
  ``Message``, and modeled members (``OriginalStatusCode`` ...) at the top level of the body.
"""

from __future__ import annotations

from typing import Any

ACCOUNT_ID = "123456789012"


class ControlPlaneError(Exception):
    """A SageMaker control-plane error: ``ValidationException`` unless said otherwise."""

    def __init__(self, message: str, code: str = "ValidationException", status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status

    def body(self) -> dict[str, Any]:
        """The JSON 1.1 error body."""
        return {"__type": self.code, "message": self.message}


class RuntimeApiError(Exception):
    """A SageMaker Runtime error; subclasses fix the code and HTTP status."""

    code = "InternalFailure"
    status = 500

    def __init__(self, message: str, **members: Any) -> None:
        super().__init__(message)
        self.message = message
        self.members = members

    def body(self) -> dict[str, Any]:
        """The rest-json error body (``Message`` plus any modeled members)."""
        return {"Message": self.message, **self.members}


class ValidationError(RuntimeApiError):
    """400: the request is wrong (unknown endpoint, missing TargetModel, body too large ...)."""

    code = "ValidationError"
    status = 400


class ModelError(RuntimeApiError):
    """424: a container answered 4xx/5xx (or did not answer)."""

    code = "ModelError"
    status = 424


class ModelNotReadyError(RuntimeApiError):
    """429: an MME model is still downloading or loading; boto3's legacy retry mode retries it."""

    code = "ModelNotReadyException"
    status = 429


class ThrottlingError(RuntimeApiError):
    """400 ThrottlingException: more requests than a serverless variant's MaxConcurrency (AWS's common error;
    boto3 retries it as a throttling error)."""

    code = "ThrottlingException"
    status = 400


class ServiceUnavailable(RuntimeApiError):
    """503: the service cannot take the request now (a full asynchronous inference queue)."""

    code = "ServiceUnavailable"
    status = 503


class InternalFailure(RuntimeApiError):
    """500: the harness itself failed."""

    code = "InternalFailure"
    status = 500


def log_group_arn(region: str, endpoint: str) -> str:
    """The CloudWatch log-group ARN SageMaker names in ModelError's ``LogStreamArn``."""
    return f"arn:aws:logs:{region}:{ACCOUNT_ID}:log-group:/aws/sagemaker/Endpoints/{endpoint}"


def model_error(
    region: str, endpoint: str, container: str, status: int, original: str, *, error_code: str | None = None
) -> ModelError:
    """A ModelError with SageMaker's message text naming ``container`` (``primary`` or a hostname)."""
    kind = "client" if 400 <= status < 500 else "server"
    # Message is at most 2048 characters in the service model; the container's body goes in verbatim
    # in OriginalMessage, and is shortened only inside Message.
    shown = original if len(original) <= 1024 else original[:1021] + "..."
    message = (
        f'Received {kind} error ({status}) from {container} with message "{shown}". '
        f"See https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
        f"#logEventViewer:group=/aws/sagemaker/Endpoints/{endpoint} in account {ACCOUNT_ID} "
        "for more information."
    )
    return ModelError(
        message,
        ErrorCode=error_code or ("CLIENT_ERROR_FROM_MODEL" if kind == "client" else "SERVER_ERROR_FROM_MODEL"),
        OriginalStatusCode=status,
        OriginalMessage=original,
        LogStreamArn=log_group_arn(region, endpoint),
    )
