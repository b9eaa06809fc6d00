# chargegw: one image for the gateway and the workers (see docker-compose.yml).
#   docker build -t chargegw .
#   docker run --rm -p 3868:3868 chargegw run          # all-in-one, embedded defaults
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY . /src
RUN pip install ".[speed]" \
    && mkdir -p /etc/chargegw /data \
    && cp /src/config/docker.toml /etc/chargegw/chargegw.toml

# The file every chargegw command reads when no --config is given; CHARGEGW_* variables
# override single keys (CHARGEGW_<SECTION>__<KEY>).
ENV CHARGEGW_CONFIG=/etc/chargegw/chargegw.toml
WORKDIR /data
VOLUME /data
# 3868: Diameter; 5555: the worker pool (keep it on the private network).
EXPOSE 3868 5555
STOPSIGNAL SIGTERM
ENTRYPOINT ["chargegw"]
CMD ["run"]
