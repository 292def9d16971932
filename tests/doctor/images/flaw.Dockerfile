# One broken image per flaw of server.py: docker build --build-arg FLAW=<flaw> (see server.py's docstring).
ARG BASE_IMAGE=servekit/base:bookworm
FROM ${BASE_IMAGE}
COPY server.py /srv/server.py
LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true
LABEL com.amazonaws.sagemaker.capabilities.multi-models=true
ARG FLAW
ENV DOCTOR_FLAW=${FLAW}
ENTRYPOINT ["python3", "/srv/server.py"]
