# Broken for MME: a correct multi-model server without the multi-models label.
ARG BASE_IMAGE=servekit/base:bookworm
FROM ${BASE_IMAGE}
COPY server.py /srv/server.py
LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true
ENTRYPOINT ["python3", "/srv/server.py"]
