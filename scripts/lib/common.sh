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

# Deployment tools, built from the Go module proxy once per version into
# .local-stack/bin/<tool>-<version>/ (Go keeps the modules in ~/go and its
# build cache, so even a rebuild after a version bump is quicker).
HELM_VERSION="v3.22.0"
# promtool comes from the Prometheus module of this version (v0.3xx.y is Prometheus 3.xx.y).
PROMETHEUS_VERSION="v0.316.0"
# The oldest Kubernetes the chart supports (deploy/helm/kami/Chart.yaml kubeVersion).
KUBE_MIN_VERSION="1.25.0"
TOOLS_BIN="$REPO/.local-stack/bin"

ensure_go() {
  command -v go >/dev/null 2>&1 || die "go is required to build the deployment tools (helm, promtool)"
}

# Sets KAMI_CHROMIUM to a Chromium the browser tests (tests/browser) drive
# with Playwright: the system's (Debian's `chromium` package), installed with
# apt-get (as root, or with sudo) when missing. Playwright's own browser
# downloads are never used.
ensure_chromium() {
  local found
  for found in "${KAMI_CHROMIUM:-}" chromium chromium-browser; do
    [[ -n "$found" ]] || continue
    if command -v "$found" >/dev/null 2>&1; then
      KAMI_CHROMIUM="$(command -v "$found")"
      export KAMI_CHROMIUM
      return
    fi
  done
  command -v apt-get >/dev/null 2>&1 || die "the browser tests need chromium, and there is no apt-get to install it"
  local sudo=()
  if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "installing chromium needs root or sudo"
    sudo=(sudo)
  fi
  say "installing chromium (Debian package) for the browser tests"
  "${sudo[@]}" apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq chromium \
    || die "could not install chromium"
  KAMI_CHROMIUM="$(command -v chromium)"
  export KAMI_CHROMIUM
}

# Sets HELM to the helm binary.
ensure_helm() {
  HELM="$TOOLS_BIN/helm-$HELM_VERSION/helm"
  [[ -x "$HELM" ]] && return
  ensure_go
  say "building helm $HELM_VERSION from the Go module proxy (once, into .local-stack/bin/)"
  GOBIN="$(dirname "$HELM")" GOFLAGS=-buildvcs=false GOWORK=off \
    go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" || die "could not build helm"
}

# Sets PROMTOOL to the promtool binary. Prometheus's go.mod has `exclude`
# directives, so `go install …@version` refuses it: download the module and
# build ./cmd/promtool inside it, leaving out the service-discovery plugins
# (the remove_all_sd tag) that promtool's rule and config checks do not need.
ensure_promtool() {
  PROMTOOL="$TOOLS_BIN/promtool-$PROMETHEUS_VERSION/promtool"
  [[ -x "$PROMTOOL" ]] && return
  ensure_go
  say "building promtool (Prometheus module $PROMETHEUS_VERSION) from the Go module proxy (once, into .local-stack/bin/)"
  local module_dir
  module_dir="$(cd / && GOFLAGS= GOWORK=off \
    go mod download -json "github.com/prometheus/prometheus@$PROMETHEUS_VERSION" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -d "$module_dir" ]] || die "could not download the Prometheus module $PROMETHEUS_VERSION"
  mkdir -p "$(dirname "$PROMTOOL")"
  (cd "$module_dir" && GOFLAGS=-buildvcs=false GOWORK=off \
    go build -tags remove_all_sd -o "$PROMTOOL.partial" ./cmd/promtool) \
    || die "could not build promtool"
  mv "$PROMTOOL.partial" "$PROMTOOL"
}
