"""`python -m kami_inventory`: serve the inventory API on KAMI_HTTP_HOST:KAMI_HTTP_PORT."""

from __future__ import annotations

import logging

import uvicorn

from kami_inventory.app import create_app
from kami_inventory.settings import InventorySettings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = InventorySettings()  # from the environment
    uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port)


if __name__ == "__main__":
    main()
