"""`python -m kami_identity`: serve the identity API on KAMI_HTTP_HOST:KAMI_HTTP_PORT."""

from __future__ import annotations

import logging

import uvicorn

from kami_identity.app import create_app
from kami_identity.settings import IdentitySettings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = IdentitySettings()  # from the environment
    uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port)


if __name__ == "__main__":
    main()
