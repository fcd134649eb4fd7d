"""`python -m kami_delivery`: serve the delivery API on KAMI_HTTP_HOST:KAMI_HTTP_PORT (8106)."""

from __future__ import annotations

import logging

import uvicorn

from kami_delivery.app import create_app
from kami_delivery.settings import DeliverySettings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = DeliverySettings()  # from the environment
    uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port)


if __name__ == "__main__":
    main()
