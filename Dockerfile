# runwarden's image: `make image` builds it, `docker compose up` runs two replicas of it.
# Two stages: a build stage with pip, and a slim runtime stage with only the virtualenv.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/runwarden
# The dependencies in a layer of their own: rebuilt only when pyproject.toml changes,
# not at every change of runwarden's code.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && /opt/runwarden/bin/pip install --requirement requirements.txt
COPY README.md ./
COPY app ./app
COPY domain ./domain
COPY adapters ./adapters
COPY migrations ./migrations
RUN /opt/runwarden/bin/pip install --no-deps .

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="runwarden" \
      org.opencontainers.image.description="Cron job manager and process supervisor with a REST API, on PostgreSQL" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 runwarden \
    && useradd --system --uid 10001 --gid runwarden --home-dir /data --shell /usr/sbin/nologin runwarden \
    && mkdir -p /data /etc/runwarden \
    && chown runwarden:runwarden /data
COPY --from=build /opt/runwarden /opt/runwarden
COPY examples/runwarden.toml /etc/runwarden/runwarden.toml
ENV PATH=/opt/runwarden/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    RUNWARDEN_CONFIG=/etc/runwarden/runwarden.toml \
    RUNWARDEN_DATA=/data
# Without DATABASE_URL the embedded PostgreSQL keeps its files here.
VOLUME ["/data"]
WORKDIR /data
USER 10001:10001
EXPOSE 9477
# The slim image has no curl: Python asks /health (200 while the process serves).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('RUNWARDEN_PORT', '9477'); sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{port}/health', timeout=4).status != 200)"]
CMD ["runwarden", "serve", "--host", "0.0.0.0"]
