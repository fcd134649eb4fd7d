"""`python -m kami_delivery`: serve the delivery API on KAMI_HTTP_HOST:KAMI_HTTP_PORT (8106)."""

from __future__ import annotations

from kami_delivery.app import create_app
from kami_delivery.settings import DeliverySettings
from kami_web.serve import run_service


def main() -> None:
    run_service(DeliverySettings(), create_app)  # settings (and secrets) from the environment


if __name__ == "__main__":
    main()
