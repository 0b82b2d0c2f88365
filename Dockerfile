# The service image: one image, three roles (`api`, `worker`, and the one-shot `migrate` /
# `setup-temporal`), chosen by the command. See docker-compose.yml.

# --- build: install the project and its dependencies into a virtualenv ---------------------
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY . .
# A regular (not editable) install: the runtime stage copies /opt/venv and nothing else.
RUN pip install .

# --- runtime: the virtualenv only, no compiler, no pip cache, not root ---------------------
FROM python:3.11-slim-bookworm AS runtime
RUN groupadd --system --gid 10001 billing \
    && useradd --system --uid 10001 --gid billing --home-dir /app --shell /usr/sbin/nologin billing
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LOG_FORMAT=json
WORKDIR /app
USER 10001:10001
# 8000: the API (and /metrics, /codec). 9464: the worker's Prometheus endpoint.
EXPOSE 8000 9464
ENTRYPOINT ["dataface-billing"]
CMD ["api", "--host", "0.0.0.0"]
