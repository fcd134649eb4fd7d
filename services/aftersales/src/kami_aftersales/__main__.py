"""`python -m kami_aftersales`: serve the aftersales API on KAMI_HTTP_HOST:KAMI_HTTP_PORT (8107)."""

from __future__ import annotations

from kami_aftersales.app import create_app
from kami_aftersales.settings import AftersalesSettings
from kami_web.serve import run_service


def main() -> None:
    run_service(AftersalesSettings(), create_app)  # settings (and secrets) from the environment


if __name__ == "__main__":
    main()
