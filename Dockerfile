# chargegw: one image for the gateway and the workers (see docker-compose.yml).
#   docker build -t chargegw .
#   docker run --rm -p 3868:3868 chargegw run          # all-in-one, embedded defaults
# It runs as the unprivileged user chargegw, uid/gid 10001 (fixed, so that volumes and
# mounted key files can be given to it): after `chargegw keys generate --dir keys` on the
# host, `sudo chown -R 10001:10001 keys` so the containers can read their keys (mode 0600).
# Operator's guide: docs/operations.md.
FROM python:3.11-slim

ARG CHARGEGW_UID=10001
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY . /src
# /data: the stores and (by default) the sockets; /run/chargegw: the status socket compose
# configures. Both belong to chargegw with mode 0700: the ipc sockets refuse a directory
# another user owns, and ipc:// is trusted by these permissions alone.
RUN pip install ".[speed,redis]" \
    && groupadd --system --gid "${CHARGEGW_UID}" chargegw \
    && useradd --system --uid "${CHARGEGW_UID}" --gid chargegw --no-create-home \
        --home-dir /data --shell /usr/sbin/nologin chargegw \
    && mkdir -p /etc/chargegw /data /run/chargegw \
    && cp /src/config/docker.toml /etc/chargegw/chargegw.toml \
    && chown chargegw:chargegw /data /run/chargegw \
    && chmod 0700 /data /run/chargegw

# The file every chargegw command reads when no --config is given; CHARGEGW_* variables
# override single keys (CHARGEGW_<SECTION>__<KEY>). Logs: JSON lines unless a terminal is
# attached (docker run -it), for a log collector.
ENV CHARGEGW_CONFIG=/etc/chargegw/chargegw.toml CHARGEGW_LOGGING__FORMAT=auto
WORKDIR /data
VOLUME /data
USER ${CHARGEGW_UID}:${CHARGEGW_UID}
# 3868: Diameter; 5555: the worker pool (keep it on the private network).
EXPOSE 3868 5555
# Gateway (`run`, `gateway`): healthy while it answers on its status socket. A worker has no
# socket of its own to ask (the gateway's status lists its workers): healthy while it runs.
# A gateway with no worker yet answers, exit status 3: alive (readiness is /readyz's).
HEALTHCHECK --interval=15s --timeout=5s --start-period=90s --retries=3 \
    CMD if xargs -0 -n1 < /proc/1/cmdline | grep -qx worker; then exit 0; fi; \
        chargegw status --interval 0 --timeout 3 > /dev/null 2>&1; rc=$?; \
        [ "$rc" = 0 ] || [ "$rc" = 3 ] || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["chargegw"]
CMD ["run"]
