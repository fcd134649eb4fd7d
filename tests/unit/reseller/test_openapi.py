"""docs/reseller-openapi.json is what the app publishes, and documents every signed route."""

from __future__ import annotations

import json

from kami_reseller import openapi


def test_the_published_openapi_document_is_current() -> None:
    assert openapi.main(["--check"]) == 0, "run: uv run python -m kami_reseller.openapi"


def test_every_signed_route_is_in_the_document() -> None:
    document = json.loads(openapi.DOCUMENT.read_text(encoding="utf-8"))
    paths = set(document["paths"])
    assert {"/v1/orders", "/v1/orders/{order_id}/keys", "/v1/webhooks/{webhook_id}/resend"} <= paths
    assert "HMAC-SHA256" in document["info"]["description"]
