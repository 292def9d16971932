# Broken for CPU instance types: the control image labelled as a GPU image (com.servekit.accelerator=gpu,
# as Dockerfile.pytorch/tensorflow label theirs with ACCELERATOR=gpu). No CUDA in it: the doctor judges
# the label, not the contents.
ARG BASE_IMAGE=servekit/base:bookworm
FROM ${BASE_IMAGE}
COPY server.py /srv/server.py
LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true
LABEL com.amazonaws.sagemaker.capabilities.multi-models=true
LABEL com.servekit.accelerator=gpu
ENTRYPOINT ["python3", "/srv/server.py"]
