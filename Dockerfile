# syntax=docker/dockerfile:1
# poolgate: one image for every command (`poolgate serve`, `router`, `operator`, `sim`, ...).
# Build:  docker build -t poolgate:dev .
# Run:    docker run --rm -p 8080:8080 -e MODEL_REF=llama-3-8b poolgate:dev router
ARG PYTHON_VERSION=3.11

# --- build: install poolgate and its runtime dependencies into a venv --------------------------
FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/poolgate
WORKDIR /src
# Dependencies first, so editing the source does not re-download them.
COPY pyproject.toml README.md ./
RUN mkdir -p src/poolgate \
 && echo '__version__ = "0.0.0"' > src/poolgate/__init__.py \
 && /opt/poolgate/bin/pip install . \
 && /opt/poolgate/bin/pip uninstall -y poolgate
COPY src ./src
RUN /opt/poolgate/bin/pip install --no-deps . \
 && /opt/poolgate/bin/poolgate --version

# --- runtime: the venv on a clean slim base, run as an unprivileged user -----------------------
FROM python:${PYTHON_VERSION}-slim AS runtime
LABEL org.opencontainers.image.title="poolgate" \
      org.opencontainers.image.description="Inference gateway, InferenceService router and operator for vLLM fleets" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 poolgate \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin poolgate
# Same path as in the build stage: the venv's scripts point at /opt/poolgate/bin/python.
COPY --from=build /opt/poolgate /opt/poolgate
ENV PATH=/opt/poolgate/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /nonexistent
USER 10001:10001
# 8080: router / gateway listener; 9901: gateway admin (/healthz /readyz /metrics).
EXPOSE 8080 9901
ENTRYPOINT ["poolgate"]
CMD ["--help"]
