# The daemon as a container image: Railway builds it (railway.json), and so can anyone with Docker.
# It installs exactly as the wheel's acceptance test does: deploy/install.sh builds the wheel from
# these sources and installs it with the versions requirements.lock pins. No sandbox, no dev tools.
#
#   docker build -t notion-video-daemon .
#   docker run --env-file daemon.env -v videos:/data -p 8080:8080 --stop-timeout 90 notion-video-daemon
#
# Give it 90 s to stop (`--stop-timeout 90`, Compose's stop_grace_period: 90s): Docker's 10 s default
# would kill steps that are still recording how they ended, or a paid call let finish (75 s at worst).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
RUN deploy/install.sh /opt/nvd

FROM ${PYTHON_IMAGE}
# tini as PID 1 forwards SIGTERM to the daemon and reaps what a killed script's FFmpeg leaves.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin nvd \
    && install -d -o nvd -g nvd /data
COPY --from=build /opt/nvd /opt/nvd
COPY deploy/start.sh /usr/local/bin/nvd-start
# Everything the daemon writes goes under /data (mount a volume there): the workspace (videos, the
# SQLite file unless DATABASE_URL names PostgreSQL); it reads the channel files from there too.
# The HTTP listener (/healthz, /readyz, /metrics) listens on every interface of the container, so
# that a published port (`docker run -p 8080:8080`) reaches it: on 127.0.0.1, the daemon's default,
# nothing outside the container could. Its port: HTTP_PORT, else PORT (as Railway sets it), else 8080.
ENV PATH=/opt/nvd/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    NVD_USER=nvd \
    WORKSPACE_DIR=/data/workspace \
    CHANNELS_DIR=/data/channels \
    HTTP_HOST=0.0.0.0
WORKDIR /data
EXPOSE 8080
# The container starts as root only for nvd-start to hand the mounted volume to the nvd user; the
# daemon itself runs as nvd (`docker run --user nvd` skips that step when /data is already nvd's).
ENTRYPOINT ["tini", "--"]
CMD ["nvd-start"]
