"""`python -m kami_payment`: the payment service's HTTP API on settings.http_host:http_port."""

from __future__ import annotations

import uvicorn

from kami_payment.app import create_app
from kami_payment.settings import PaymentSettings


def main() -> None:
    settings = PaymentSettings()  # secrets come from the environment
    uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port)


if __name__ == "__main__":
    main()
