# Broken for x86 instances: an arm64 image. FROM scratch with only COPY, so it builds on any host
# without emulation: docker build --platform linux/arm64.
FROM scratch
COPY server.py /srv/server.py
LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true
ENTRYPOINT ["python3", "/srv/server.py"]
