# syntax=docker/dockerfile:1
#
# docker build -t issuer:0.1.0 .
# See the README's "container" section for how to run it (read-only root filesystem included).

ARG PYTHON_IMAGE=python:3.12-slim-trixie

# --- build: install the package and its dependencies into a self-contained venv -------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/issuer

WORKDIR /src
COPY pyproject.toml README.md ./
COPY issuer/ issuer/
# A regular (non-editable) install: the venv holds the built wheel, not a link to /src.
# pip compiles the .pyc files here, so the read-only runtime never needs to write them.
RUN /opt/issuer/bin/pip install ".[server]"

# --- runtime: the same base, no compiler, no sources, a fixed non-root user ---------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="issuer" \
      org.opencontainers.image.description="Async token issuer: rotating signing keys, JWKS, offline verification" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed numeric UID/GID so that Kubernetes' runAsNonRoot can verify it and volume
# ownership is predictable (k8s/deployment.yaml uses the same numbers).
RUN groupadd --system --gid 10001 issuer \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin issuer

COPY --from=build /opt/issuer /opt/issuer

# /app/var and /app/keys are where the embedded SQLite default keeps its database and KEK
# (relative to the working directory); /tmp/metrics is the Prometheus multiprocess directory.
# With a read-only root filesystem they must be volumes or tmpfs mounts instead.
WORKDIR /app
RUN mkdir -p /app/var /app/keys /tmp/metrics \
 && chown 10001:10001 /app/var /app/keys /tmp/metrics

ENV PATH=/opt/issuer/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/metrics \
    ISSUER_HOST=0.0.0.0 \
    ISSUER_ADMIN_HOST=0.0.0.0

USER 10001:10001

EXPOSE 8080 8081

# Slim images have no curl: probe /livez with the standard library (urlopen raises on non-2xx).
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/livez' % os.environ.get('ISSUER_PORT', '8080'), timeout=3)"]

# SIGTERM (Docker's default stop signal) drains in-flight requests within
# ISSUER_SHUTDOWN_GRACE (20 s by default): stop with `docker stop -t 30` or more.
ENTRYPOINT ["issuer"]
CMD ["serve"]
