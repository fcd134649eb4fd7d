"""`python -m kami_reseller.openapi [--check]`: write (or check) the reseller
API's OpenAPI document, docs/reseller-openapi.json, from the app itself.

The app is built with throwaway settings (nothing connects: no request is
served), so the document is what `GET /openapi.json` of a running service says.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr

from kami_reseller.app import create_app
from kami_reseller.settings import ResellerSettings
from kami_web.auth import AuthSettings

DOCUMENT = Path(__file__).resolve().parents[4] / "docs" / "reseller-openapi.json"


def openapi_document() -> dict[str, Any]:
    public_key = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    settings = ResellerSettings(
        reseller_secret_key=SecretStr(base64.b64encode(bytes(32)).decode()),
        mongodb_uri="mongodb://127.0.0.1:1/",
        kafka_bootstrap="127.0.0.1:1",
    )
    auth = AuthSettings(auth_public_key=public_key, service_token_secret=SecretStr("x" * 32))
    app = create_app(settings, auth=auth)
    return app.openapi()


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    parser.add_argument("--out", type=Path, default=DOCUMENT)
    args = parser.parse_args(argv)
    wanted = render(openapi_document())
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != wanted:
            print(f"{args.out} is stale: run python -m kami_reseller.openapi", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(wanted, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
