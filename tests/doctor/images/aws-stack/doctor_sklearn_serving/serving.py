"""`docker run IMAGE serve`: start sagemaker-inference's model server with this package's handler."""

import os
import sys

from sagemaker_inference import model_server

HANDLER_SERVICE = "doctor_sklearn_serving.handler_service"


def main():
    if sys.argv[1:] != ["serve"]:
        sys.exit(f"usage: serve (got {sys.argv[1:]})")
    host = os.environ.get("SERVE_HOST")
    if host:  # a host-network run asks for loopback; MMS reads MMS_* overrides (enable_envvars_config)
        address = f"http://{host}:{os.environ.get('SAGEMAKER_BIND_TO_PORT', '8080')}"
        os.environ.setdefault("MMS_INFERENCE_ADDRESS", address)
        os.environ.setdefault("MMS_MANAGEMENT_ADDRESS", address)
    model_server.start_model_server(handler_service=HANDLER_SERVICE)


if __name__ == "__main__":
    main()
