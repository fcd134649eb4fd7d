# syntax=docker/dockerfile:1
# One image for every Kami service. The argument names the service:
#
#   docker build -t kami .
#   docker run --env-file kami.env -e KAMI_HTTP_PORT=8101 -p 8101:8101 kami identity
#
# runs `kami serve identity`. Settings are KAMI_* environment variables
# (deploy/README.md); the HTTP server listens on 0.0.0.0 in the image.
#
# Dependencies come from uv.lock only (`uv sync --frozen`), without the dev group.

ARG PYTHON_IMAGE=python:3.11-slim

# Only what decides the dependencies: uv.lock and every pyproject.toml. BuildKit
# keys the next stage's COPY by content, so editing code does not re-run the
# dependency install below; a new workspace member needs no change here.
FROM ${PYTHON_IMAGE} AS manifests
WORKDIR /src
COPY . .
RUN find . -type f ! -name pyproject.toml ! -name uv.lock -delete \
    && find . -type d -empty -delete

FROM ${PYTHON_IMAGE} AS build
# The same uv as scripts/lib/common.sh (UV_VERSION), from PyPI.
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app
COPY --from=manifests /src/ ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace
COPY . .
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev \
    && python -m compileall -q libs services

# The runtime: the interpreter, the virtualenv and the source (the workspace
# packages are installed editable, so /app keeps the path they point to).
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 kami \
    && useradd --system --uid 10001 --gid kami --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin kami
WORKDIR /app
# Owned by root and read-only to the service: the process cannot rewrite its code.
COPY --from=build /app /app
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    KAMI_HTTP_HOST=0.0.0.0
USER 10001:10001
# identity catalog inventory ordering payment delivery aftersales
EXPOSE 8101 8102 8103 8104 8105 8106 8107
ENTRYPOINT ["kami", "serve"]
