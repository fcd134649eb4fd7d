"""`python -m kami_aftersales`: serve the aftersales API on KAMI_HTTP_HOST:KAMI_HTTP_PORT (8107)."""

from __future__ import annotations

import logging

import uvicorn

from kami_aftersales.app import create_app
from kami_aftersales.settings import AftersalesSettings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = AftersalesSettings()  # from the environment
    uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port)


if __name__ == "__main__":
    main()
