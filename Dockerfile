# The upload service image: gunicorn + the Flask app, run as an unprivileged user.
# Two stages: dependencies are installed into a virtualenv in the first; the final image
# copies only that virtualenv and the files the service reads (no pip cache, no compilers).

FROM python:3.12-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /venv
COPY . .
RUN /venv/bin/pip install .

FROM python:3.12-slim
RUN groupadd --system lab \
    && useradd --system --gid lab --home-dir /app --no-create-home --shell /usr/sbin/nologin lab \
    && mkdir -p /app /run/lab \
    && chown lab:lab /run/lab
COPY --from=build /venv /venv
WORKDIR /app
COPY gunicorn.conf.py ./
COPY migrations ./migrations
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LAB_MIGRATIONS_DIR=/app/migrations \
    LAB_HOME=/tmp/lab \
    LAB_HOST=0.0.0.0 \
    LAB_PORT=8000 \
    LAB_SOCKET=/run/lab/gunicorn.sock
USER lab
EXPOSE 8000
# Migrations first (idempotent, serialised by an advisory lock), then gunicorn.
CMD ["sh", "-c", "lab db migrate && exec gunicorn -c gunicorn.conf.py 'service:create_app()'"]
