"""`python -m kami_ordering`: serve the ordering API on KAMI_HTTP_HOST:KAMI_HTTP_PORT (8104)."""

from __future__ import annotations

import logging

import uvicorn

from kami_ordering.app import create_app
from kami_ordering.settings import OrderingSettings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = OrderingSettings()  # from the environment
    uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port)


if __name__ == "__main__":
    main()
