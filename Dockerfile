# poolgate: one image for every command (`poolgate serve`, `router`, `operator`, `sim`, ...).
# Build:  docker build -t poolgate:dev .          (or: podman build; `make image` without a registry)
# Run:    docker run --rm -p 8080:8080 -e MODEL_REF=llama-3-8b poolgate:dev router
#
# BASE_IMAGE is any image with Python 3.11 as `python3`, the `venv` module and groupadd/useradd:
# python:3.11-slim from a registry, or localhost/poolgate-base:bookworm built from Debian packages
# by scripts/image/build-base.sh (Debian 12's python3 is 3.11). Both stages use the same base, so
# the venv's interpreter link (/opt/poolgate/bin/python -> the base's python3) holds at run time.
ARG BASE_IMAGE=python:3.11-slim

# --- build: install poolgate and its runtime dependencies into a venv --------------------------
FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_PROGRESS_BAR=off \
    PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/poolgate
WORKDIR /src
# Dependencies first, from pyproject.toml alone (a stub package and README), so editing the
# source or the README does not re-download them.
COPY pyproject.toml ./
RUN mkdir -p src/poolgate \
 && echo '__version__ = "0.0.0"' > src/poolgate/__init__.py \
 && touch README.md \
 && /opt/poolgate/bin/pip install . \
 && /opt/poolgate/bin/pip uninstall -y poolgate \
 && rm -rf build src/poolgate.egg-info
# setup.py compiles the request path's hot modules with mypyc (docs/gateway.md, "Data plane cost
# at saturation"): a C compiler, and Python's headers where the base lacks them (Debian's
# python3; python:3.11-slim has its own), in this stage only. The build fails rather than ship
# plain modules unnoticed.
RUN missing=""; \
    command -v cc >/dev/null 2>&1 || missing="gcc libc6-dev"; \
    python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
      || missing="$missing python3-dev"; \
    if [ -n "$missing" ]; then \
      apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing \
      && rm -rf /var/lib/apt/lists/*; \
    fi
COPY README.md setup.py ./
COPY src ./src
# pip and setuptools are not needed to run (25 MB): the runtime venv gets neither.
RUN /opt/poolgate/bin/pip install --no-deps . \
 && /opt/poolgate/bin/python -c 'import sys, poolgate.proxy.gateway as m; sys.exit(0 if m.__file__.endswith(".so") else "not compiled: " + m.__file__)' \
 && /opt/poolgate/bin/python -m pip uninstall -y pip setuptools \
 && /opt/poolgate/bin/poolgate --version

# --- runtime: the venv on a clean base, run as an unprivileged user ----------------------------
FROM ${BASE_IMAGE} AS runtime
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
# 8080: router / gateway listener; 9002: endpoint picker (poolgate epp, gRPC); 9901: admin.
EXPOSE 8080 9002 9901
ENTRYPOINT ["poolgate"]
CMD ["--help"]
# Last, so that a new version or commit changes only the image's metadata, not its layers.
ARG BASE_IMAGE
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="poolgate" \
      org.opencontainers.image.description="Inference gateway, InferenceService router and operator for vLLM fleets" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
