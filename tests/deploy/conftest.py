"""Fixtures of the deployment checks: the helm and promtool binaries.

`./scripts/test` builds both from the Go module proxy into `.local-stack/bin/`
(once per version), passes their paths in KAMI_HELM / KAMI_PROMTOOL and sets
KAMI_REQUIRE_DEPLOY_TOOLS=1, so a missing tool fails the run there. Run
directly without them, the tests that need a tool are skipped with a reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / ".local-stack" / "bin"


def _tool(name: str, env: str) -> Path:
    explicit = os.environ.get(env)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            pytest.fail(f"{env}={explicit} is not a file")
        return path
    built = sorted(TOOLS.glob(f"{name}-*/{name}"))
    if built:
        return built[-1]
    message = f"{name} is not built: ./scripts/test builds it into {TOOLS}/{name}-<version>/"
    if os.environ.get("KAMI_REQUIRE_DEPLOY_TOOLS") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def helm() -> Path:
    return _tool("helm", "KAMI_HELM")


@pytest.fixture(scope="session")
def promtool() -> Path:
    return _tool("promtool", "KAMI_PROMTOOL")
