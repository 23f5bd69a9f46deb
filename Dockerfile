# syntax=docker/dockerfile:1
# connector-fleet: one connector per container (connector-run), or the whole fleet
# (connector-fleet run-all). Build:  docker build -t connector-fleet:0.1.0 .
# Run:  docker run -e REDIS_URL=redis://redis:6379/0 -e CONNECTOR_NAME=weather-noaa \
#         -v "$PWD/connectors.json:/etc/connectors/connectors.json:ro" connector-fleet:0.1.0
# See docs/deployment.md.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# Stage 1: build the wheel of the package and the wheels of its dependencies.
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY framework ./framework
COPY worker ./worker
COPY providers ./providers
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Stage 2: the runtime, with only the installed wheels (no source tree).
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CONNECTORS_CONFIG_PATH=/etc/connectors/connectors.json \
    METRICS_HOST=0.0.0.0 \
    METRICS_PORT=9102 \
    LOG_FORMAT=json \
    FLEET_DRAIN_TIMEOUT_S=30
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels /wheels/connector_fleet-*.whl \
    && groupadd --system --gid 10001 connector \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/connector \
       --create-home --shell /usr/sbin/nologin connector \
    && mkdir -p /etc/connectors
USER 10001:10001
WORKDIR /home/connector
EXPOSE 9102
# Liveness of the ops API (GET /healthz on METRICS_PORT).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['METRICS_PORT'], timeout=4)"]
# Exec form: connector-run is PID 1 and receives SIGTERM (drain, then exit 0) and
# SIGHUP (reload) itself; it installs handlers for both. The connector name is the
# argument (docker run IMAGE weather-noaa) or CONNECTOR_NAME.
STOPSIGNAL SIGTERM
ENTRYPOINT ["connector-run"]
CMD []
