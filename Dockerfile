# The portal image: one image, three roles (web, worker, beat) chosen by the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORTAL_DATA_DIR=/data \
    DJANGO_SETTINGS_MODULE=portal.settings \
    WEB_CONCURRENCY=3

RUN useradd --create-home --uid 10001 portal \
    && mkdir -p /app /data \
    && chown portal:portal /data

WORKDIR /app
COPY . /app
RUN pip install /app && chown -R portal:portal /app

USER portal
VOLUME ["/data"]
EXPOSE 8000

# Web by default; docker-compose.yml overrides the command for worker and beat.
# Forwarded headers are trusted from loopback only unless FORWARDED_ALLOW_IPS names the proxy.
# gunicorn's sync workers (one request at a time each); their number is WEB_CONCURRENCY,
# which gunicorn reads itself (docs/benchmarks.md: about one per core for the agents' polls).
CMD ["gunicorn", "portal.wsgi:application", "--bind", "0.0.0.0:8000", "--access-logfile", "-"]
