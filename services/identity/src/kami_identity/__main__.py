"""`python -m kami_identity`: serve the identity API on KAMI_HTTP_HOST:KAMI_HTTP_PORT."""

from __future__ import annotations

from kami_identity.app import create_app
from kami_identity.settings import IdentitySettings
from kami_web.serve import run_service


def main() -> None:
    run_service(IdentitySettings(), create_app)  # settings (and secrets) from the environment


if __name__ == "__main__":
    main()
