# Shared by scripts/test and scripts/run. Sourced, not executed.

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STACK="$REPO/deploy/local/stack"
UV_VERSION="0.13.9"

say() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# uv comes from PyPI like everything else; nothing is installed by hand.
ensure_uv() {
  if command -v uv >/dev/null 2>&1; then
    UV=(uv)
    return
  fi
  command -v python3 >/dev/null 2>&1 || die "python3 (>= 3.11) is required"
  say "installing uv $UV_VERSION from PyPI"
  python3 -m pip install --quiet --user "uv==$UV_VERSION" \
    || python3 -m pip install --quiet "uv==$UV_VERSION" \
    || die "could not install uv with pip"
  UV=(python3 -m uv)
}

# Real servers: explicit KAMI_* URLs win; else testcontainers where Docker
# answers (the tests start them); else the project's local stack.
# Sets STARTED_STACK=1 when this call started the stack.
STARTED_STACK=0
ensure_servers() {
  if [[ -n "${KAMI_KAFKA_BOOTSTRAP:-}" && -n "${KAMI_MONGODB_URI:-}" ]]; then
    say "using KAMI_KAFKA_BOOTSTRAP=$KAMI_KAFKA_BOOTSTRAP KAMI_MONGODB_URI=$KAMI_MONGODB_URI"
    return
  fi
  if [[ "${1:-}" == "allow-docker" ]] && command -v docker >/dev/null 2>&1 \
      && timeout 5 docker info >/dev/null 2>&1; then
    say "Docker answers: the tests start Kafka and MongoDB with testcontainers"
    return
  fi
  if ! "$STACK" status >/dev/null 2>&1; then
    STARTED_STACK=1
  fi
  say "starting the local stack (Kafka + FerretDB on 127.0.0.1)"
  "$STACK" up >/dev/null || die "the local stack did not start (see deploy/local/stack logs)"
  eval "$("$STACK" env)"
  export KAMI_KAFKA_BOOTSTRAP KAMI_MONGODB_URI
}
