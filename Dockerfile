# OMA's production image: the runtime dependencies from the hash lock, the code, the admin's static files, run as an
# unprivileged user. docker-compose.yml runs it as web, the workers, beat and the one-shot migrate.
#
# Base: Python 3.11.16 on Debian 12 "bookworm", slim. The exact patch tag says what it is; the digest (the tag's
# multi-platform index as of its 2026-09-01 build, recorded in docker-library/repo-info) makes the build
# reproducible: a re-pushed tag cannot change the image under a rebuild. To move on, take the new tag's digest
# from `docker buildx imagetools inspect python:3.11.X-slim-bookworm` and change both (README, "Upgrading").
FROM python:3.11.16-slim-bookworm@sha256:c425d915a89a6dcd3183b1797ad9bd8878caff5a417f6371c8df93c8ea8b727f

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    STATIC_ROOT=/app/static

# A user of the app's own with a fixed uid (10001: above any system or login range, so that it maps to no account on
# the host), owning nothing but var/: the code and the static files are root's and read-only for it.
RUN groupadd --system --gid 10001 oma \
 && useradd --system --uid 10001 --gid oma --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin oma

WORKDIR /app

# Runtime requirements only (pytest, ruff, mypy, playwright and the rest are in requirements-dev.txt, never here),
# every file checked against the lock's hashes; wheels only, so nothing is compiled in the image.
COPY requirements.txt .
RUN pip install --no-cache-dir --require-hashes --only-binary=:all: -r requirements.txt

# .dockerignore keeps .env, var/, the venvs, .git, tests and caches out of this copy.
COPY . .

# Static files for whitenoise, collected at build time into STATIC_ROOT (settings need a SECRET_KEY with DEBUG=0;
# this one signs nothing). var/ is the app's: SQLite and the filesystem broker live there without DATABASE_URL and
# REDIS_URL (a plain `docker run`), and settings create var/broker/ on import in that case.
RUN SECRET_KEY=collectstatic-only DEBUG=0 python manage.py collectstatic --noinput \
 && mkdir -p var \
 && chown -R oma:oma var

USER 10001:10001
EXPOSE 8000
# docker-compose.yml gives each service its own command; alone, the image serves the web app.
CMD ["gunicorn", "oma.wsgi:application", "--config", "python:oma.gunicorn_conf", "--bind", "0.0.0.0:8000"]
