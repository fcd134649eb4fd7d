"""`python -m kami_payment`: the payment service's HTTP API on settings.http_host:http_port."""

from __future__ import annotations

from kami_payment.app import create_app
from kami_payment.settings import PaymentSettings
from kami_web.serve import run_service


def main() -> None:
    run_service(PaymentSettings(), create_app)  # settings (and secrets) from the environment


if __name__ == "__main__":
    main()
