"""`python -m kami_reseller`: serve the reseller API on KAMI_HTTP_HOST:KAMI_HTTP_PORT (8109)."""

from __future__ import annotations

from kami_reseller.app import create_app
from kami_reseller.settings import ResellerSettings
from kami_web.serve import run_service


def main() -> None:
    run_service(ResellerSettings(), create_app)  # settings from the environment


if __name__ == "__main__":
    main()
