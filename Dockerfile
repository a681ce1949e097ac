# TrustForge's model server on CPU: the core package and the `serve` extra, run as a non-root user.
#
#   docker build -t trustforge:0.1.0 .
#   docker run --rm -p 8080:8080 --user "$(id -u):$(id -g)" -v "$PWD/.trustforge:/workspace" \
#       trustforge:0.1.0 models:/breast-cancer-mlp@champion --public-metadata
#
# The image holds no model and no key: the workspace (registry, artifacts, keys, audit log) is
# mounted at /workspace, or TRUSTFORGE_DB_URL / TRUSTFORGE_ARTIFACTS / TRUSTFORGE_KEK point at
# shared ones (see the README's "Docker and Kubernetes"). No test builds this image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TRUSTFORGE_HOME=/workspace

# torch's CPU build from PyTorch's own index first (PyPI's Linux wheel is the CUDA one, GBs larger);
# the package's range (torch>=2.6,<3) then keeps it, so the next step does not replace it.
ARG TORCH_VERSION=2.13.0
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"

WORKDIR /opt/trustforge
COPY pyproject.toml README.md ./
COPY src ./src
# Add extras the served models need, e.g. --build-arg EXTRAS=serve,text,export (onnx backend).
ARG EXTRAS=serve
RUN pip install ".[${EXTRAS}]" && rm -rf /opt/trustforge/src /opt/trustforge/build

RUN useradd --create-home --uid 10001 --user-group trustforge \
    && mkdir -p /workspace && chown trustforge:trustforge /workspace
USER trustforge
WORKDIR /workspace
VOLUME ["/workspace"]
EXPOSE 8080

# Listens on every address of the container, so callers need tokens (the server refuses to start
# open on such an address unless --insecure-no-auth). Arguments: MODEL_URI [serve options].
ENTRYPOINT ["trustforge", "serve", "--host", "0.0.0.0", "--port", "8080"]
CMD ["--help"]
