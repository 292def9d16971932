"""What every SDK user script shares: its arguments (one JSON argv), its result line, and the waits.

The SDK's own waits poll every 30 s (v2's ``wait_for_endpoint`` sleeps before its first look), so the
scripts deploy with ``wait=False`` and wait with a 1 s poll through the SDK's public calls.
"""

import json
import sys
import time

ROLE = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"
INSTANCE = "ml.m5.large"
TIMINGS: dict = {}
CALLS: list = []


def args():
    """The script's arguments: one JSON object on the command line."""
    return json.loads(sys.argv[1])


def timed(label, fn, *a, **kw):
    """Call ``fn`` and record how long it took under ``label``."""
    started = time.monotonic()
    try:
        return fn(*a, **kw)
    finally:
        TIMINGS[label] = round(time.monotonic() - started, 2)


def report(result):
    """Print the result line the test reads (with the timings)."""
    print("\nRESULT " + json.dumps({**result, "timings": TIMINGS, "calls": collapsed(CALLS)}), flush=True)


def collapsed(calls):
    """``calls`` in order, a run of the same call as one ``"<call> xN"`` (the waits' polls)."""
    runs: list = []
    for call in calls:
        if runs and runs[-1][0] == call:
            runs[-1][1] += 1
        else:
            runs.append([call, 1])
    return [call if n == 1 else f"{call} x{n}" for call, n in runs]


def wait_deleted(sagemaker_client, endpoint_name):
    """boto3's endpoint_deleted waiter, polling every second."""
    sagemaker_client.get_waiter("endpoint_deleted").wait(
        EndpointName=endpoint_name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})


def error_of(fn, *a, **kw):
    """``{"code", "message"}`` of the botocore ClientError ``fn`` raises, or a note that it raised none."""
    from botocore.exceptions import ClientError

    try:
        fn(*a, **kw)
    except ClientError as exc:
        return {"code": exc.response["Error"]["Code"], "message": exc.response["Error"]["Message"]}
    return {"code": None, "message": "no error raised"}


def csv_rows(rows):
    """Rows as a CSV body."""
    return "\n".join(",".join(str(x) for x in row) for row in rows)


def leftovers(sagemaker_client, name):
    """Endpoints, endpoint configs and models whose name contains ``name``, as listed after a cleanup."""
    return {
        "endpoints": [e["EndpointName"] for e in sagemaker_client.list_endpoints(NameContains=name)["Endpoints"]],
        "configs": [c["EndpointConfigName"]
                    for c in sagemaker_client.list_endpoint_configs(NameContains=name)["EndpointConfigs"]],
        "models": [m["ModelName"] for m in sagemaker_client.list_models(NameContains=name)["Models"]],
    }



def record_calls():
    """Record every AWS operation any botocore client of this process sends, as ``service.Operation`` in
    ``CALLS`` (reported with the result): the harness keeps no request log, and the SDK makes its clients
    from several sessions, so the one place every call passes is botocore's ``BaseClient._make_api_call``."""
    from botocore.client import BaseClient

    send = BaseClient._make_api_call

    def recorded(client, operation_name, api_params):
        CALLS.append(f"{client.meta.service_model.service_name}.{operation_name}")
        return send(client, operation_name, api_params)

    BaseClient._make_api_call = recorded
