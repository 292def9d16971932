# The doctor's control image: a correct stdlib server (server.py) that passes every check.
ARG BASE_IMAGE=servekit/base:bookworm
FROM ${BASE_IMAGE}
COPY server.py /srv/server.py
LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true
LABEL com.amazonaws.sagemaker.capabilities.multi-models=true
ENTRYPOINT ["python3", "/srv/server.py"]
