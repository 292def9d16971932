# Broken: the control image plus 32 MiB, checked against a limit between the two sizes.
ARG BASE_IMAGE=servekit/base:bookworm
FROM ${BASE_IMAGE}
COPY server.py /srv/server.py
RUN head -c 33554432 /dev/urandom > /srv/weights.bin
LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true
LABEL com.amazonaws.sagemaker.capabilities.multi-models=true
ENTRYPOINT ["python3", "/srv/server.py"]
