"""`python -m kami_webfront`: the web pages on `KAMI_HTTP_HOST:KAMI_HTTP_PORT` (8108)."""

from __future__ import annotations

import sys

from kami_web.serve import run_service
from kami_webfront.app import create_app
from kami_webfront.settings import WebSettings


def main() -> int:
    run_service(WebSettings(), create_app)
    return 0


if __name__ == "__main__":
    sys.exit(main())
