"""The platform as separate processes: every service up, healthy, and
identity's people usable by the other services' auth."""

from __future__ import annotations

import httpx
import jwt

from kami_actors import approved_seller
from kami_local import Platform
from kami_market import operator_of
from tests.e2e.conftest import OPERATOR_PHONE


async def test_every_service_is_ready_and_exposes_metrics(platform: Platform) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        for service in platform.ports:
            if platform.pid(service) is None:
                continue
            ready = await client.get(f"{platform.url(service)}/readyz")
            assert ready.status_code == 200, (service, ready.text)
            metrics = await client.get(f"{platform.url(service)}/metrics")
            assert "kami_outbox_lag_seconds" in metrics.text, service


async def test_operator_approves_a_seller_whose_next_token_carries_the_role(
    platform: Platform, platform_databases: None
) -> None:
    operator = await operator_of(platform, OPERATOR_PHONE)
    seller = await approved_seller(platform, operator, "小明的卡铺")
    claims = jwt.decode(seller.access_token, options={"verify_signature": False})
    assert "seller" in claims["roles"]
    assert claims["tier"] == "real_name"
