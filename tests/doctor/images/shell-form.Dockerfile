# Broken: a shell-form ENTRYPOINT. /bin/sh is PID 1, ignores SIGTERM and never passes it on.
ARG BASE_IMAGE=servekit/base:bookworm
FROM ${BASE_IMAGE}
COPY server.py /srv/server.py
LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true
LABEL com.amazonaws.sagemaker.capabilities.multi-models=true
# hadolint ignore=DL3025
ENTRYPOINT cd /srv && python3 server.py
