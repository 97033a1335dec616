# ftpexport as a daemon: watches /data/inbox and delivers with the rules in /data/rules.
#
#   docker build -t ftpexport .
#   docker run -d --name ftpexport --stop-timeout 40 -p 127.0.0.1:9464:9464 \
#     -v /srv/inbox:/data/inbox:ro -v /srv/ftpexport/rules:/data/rules:ro \
#     -v ftpexport-state:/data/state -v /srv/ftpexport/secrets:/data/secrets:ro ftpexport
#
# The process runs as uid 10001, not root: the secrets folder holds secrets.enc and secrets.key,
# both owned by uid 10001 and mode 0600 (the key file is refused otherwise). Metrics and
# /healthz are on port 9464. `docker stop` sends SIGTERM: uploads in flight get FTPEXPORT_GRACE
# seconds (keep --stop-timeout above it), the rest stays pending in the ledger.
#
# Several workers on one PostgreSQL ledger: FTPEXPORT_STATE=postgresql://USER@HOST:PORT/DB and the
# password in PGPASSWORD (deploy/compose.yaml runs two of them; /data/state is then left unused).
FROM python:3.11-slim

RUN useradd --system --create-home --uid 10001 --user-group ftpexport \
    && mkdir -p /data/inbox /data/rules /data/state /data/secrets \
    && chown ftpexport:ftpexport /data/state \
    && chmod 0700 /data/state

WORKDIR /src
COPY pyproject.toml README.md ./
COPY ftpexport ./ftpexport
COPY samples ./samples
RUN pip install --no-cache-dir . && cd / && rm -rf /src /root/.cache

WORKDIR /data/state
USER 10001:10001
ENV FTPEXPORT_RULES=/data/rules \
    FTPEXPORT_STATE=/data/state/ledger.sqlite3 \
    FTPEXPORT_SECRETS=/data/secrets/secrets.enc \
    FTPEXPORT_SECRETS_KEY_FILE=/data/secrets/secrets.key \
    FTPEXPORT_LOG_FORMAT=json \
    FTPEXPORT_METRICS_PORT=9464 \
    FTPEXPORT_METRICS_HOST=0.0.0.0 \
    FTPEXPORT_GRACE=30 \
    PYTHONUNBUFFERED=1
VOLUME ["/data/inbox", "/data/rules", "/data/state", "/data/secrets"]
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=4).status != 200)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["ftpexport"]
CMD ["watch", "/data/inbox"]
