# ftpexport as a daemon: watches /data/inbox and delivers with the rules in /data/rules.
#   docker build -t ftpexport .
#   docker run -d --name ftpexport \
#     -v /srv/inbox:/data/inbox -v /srv/rules:/data/rules:ro -v ftpexport-state:/data/state \
#     --env-file /etc/ftpexport/secrets.env ftpexport
# Stop with `docker stop` (SIGTERM): uploads in flight finish, the rest stays pending in the ledger.
FROM python:3.11-slim

RUN useradd --system --create-home --uid 10001 ftpexport \
    && mkdir -p /data/inbox /data/rules /data/state \
    && chown -R ftpexport:ftpexport /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY ftpexport ./ftpexport
COPY samples ./samples
RUN pip install --no-cache-dir . && rm -rf /root/.cache

USER ftpexport
ENV FTPEXPORT_RULES=/data/rules \
    FTPEXPORT_STATE=/data/state/ledger.sqlite3 \
    FTPEXPORT_LOG_FORMAT=json \
    PYTHONUNBUFFERED=1
VOLUME ["/data/inbox", "/data/state"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["ftpexport"]
CMD ["watch", "/data/inbox"]
