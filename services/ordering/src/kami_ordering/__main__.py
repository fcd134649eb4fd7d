"""`python -m kami_ordering`: serve the ordering API on KAMI_HTTP_HOST:KAMI_HTTP_PORT (8104)."""

from __future__ import annotations

from kami_ordering.app import create_app
from kami_ordering.settings import OrderingSettings
from kami_web.serve import run_service


def main() -> None:
    run_service(OrderingSettings(), create_app)  # settings (and secrets) from the environment


if __name__ == "__main__":
    main()
