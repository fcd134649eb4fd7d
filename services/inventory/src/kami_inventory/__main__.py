"""`python -m kami_inventory`: serve the inventory API on KAMI_HTTP_HOST:KAMI_HTTP_PORT."""

from __future__ import annotations

from kami_inventory.app import create_app
from kami_inventory.settings import InventorySettings
from kami_web.serve import run_service


def main() -> None:
    run_service(InventorySettings(), create_app)  # settings (and secrets) from the environment


if __name__ == "__main__":
    main()
