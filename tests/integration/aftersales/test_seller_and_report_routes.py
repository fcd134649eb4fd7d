"""Aftersales' seller view of tickets (`GET /seller/tickets`) and the
operators' flagged sellers (`GET /reports/flagged-sellers`), over HTTP on
FerretDB: a seller sees the tickets about its own orders and no other's."""

from __future__ import annotations

from datetime import timedelta

import httpx
from fastapi import FastAPI
from pymongo.asynchronous.database import AsyncDatabase

from kami_aftersales import handlers
from kami_aftersales.api import install_refusal_handler, router
from kami_aftersales.handlers import OpenTicket
from kami_events.catalogue.aftersales import IssueCategory
from kami_events.catalogue.identity import Role
from kami_events.clock import ManualClock
from kami_events.mongo import Document
from kami_web.auth import TokenVerifier, install_auth
from kami_web.errors import install_error_handlers
from kami_web.testing import AuthKeys
from tests.integration.aftersales.test_aftersales_on_ferretdb import (
    START,
    committed,
    delivered,
    make_deps,
    project_own_events,
)


async def test_a_seller_sees_tickets_about_its_orders_and_operators_see_flagged_sellers(
    mongo_db: AsyncDatabase[Document],
) -> None:
    clock = ManualClock(START)
    deps = await make_deps(mongo_db, clock)
    await delivered(deps, "order-1", START)
    await delivered(deps, "order-2", START)
    await delivered(deps, "order-3", START, seller_id="seller-2", offer_id="o-2")
    opened = []
    for n, order in enumerate(("order-1", "order-2", "order-3"), start=1):
        outcome = await handlers.open_ticket(
            deps,
            OpenTicket(
                "buyer-1", order, IssueCategory.KEY_INVALID, [], "bad", (), f"k-{n}", f"r-{n}"
            ),
        )
        opened.append(outcome.ticket.id)
        clock.advance(timedelta(seconds=1))
    await project_own_events(deps, await committed(mongo_db))

    keys = AuthKeys.generate()
    app = FastAPI()
    app.include_router(router)
    app.state.aftersales = deps
    install_error_handlers(app)
    install_auth(app, TokenVerifier(keys.settings(), now=clock))
    install_refusal_handler(app)

    def bearer(user: str, *roles: Role) -> dict[str, str]:
        token = keys.user_token(user, *roles)
        return {"Authorization": f"Bearer {token}"}

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://aftersales"
    ) as http:
        mine = await http.get("/seller/tickets", headers=bearer("seller-1", Role.SELLER))
        assert mine.status_code == 200, mine.text
        assert {t["ticket_id"] for t in mine.json()["tickets"]} == set(opened[:2])
        assert {t["order_id"] for t in mine.json()["tickets"]} == {"order-1", "order-2"}
        assert all("buyer_id" not in t for t in mine.json()["tickets"])
        theirs = await http.get("/seller/tickets", headers=bearer("seller-2", Role.SELLER))
        assert [t["ticket_id"] for t in theirs.json()["tickets"]] == [opened[2]]
        resolved = await http.get(
            "/seller/tickets?state=resolved", headers=bearer("seller-1", Role.SELLER)
        )
        # The issuer says the keys are invalid: both claims were upheld at once.
        assert [t["ticket_id"] for t in resolved.json()["tickets"]] == opened[1::-1]
        escalated = await http.get(
            "/seller/tickets?state=escalated", headers=bearer("seller-1", Role.SELLER)
        )
        assert escalated.json()["tickets"] == []
        buyer = await http.get("/seller/tickets", headers=bearer("buyer-1", Role.BUYER))
        assert buyer.status_code == 403

        # Two delivered orders and two tickets flag seller-1 (min_orders=2 here).
        flagged = await http.get("/reports/flagged-sellers", headers=bearer("op", Role.OPERATOR))
        assert flagged.status_code == 200, flagged.text
        by_id = {s["seller_id"]: s for s in flagged.json()["sellers"]}
        assert "seller-1" in by_id and "seller-2" not in by_id
        assert by_id["seller-1"]["flags"]
        assert {f["reason"] for f in by_id["seller-1"]["flags"]} <= {
            "high_claim_rate",
            "high_invalid_key_rate",
        }
        seller_only = await http.get(
            "/reports/flagged-sellers", headers=bearer("seller-1", Role.SELLER)
        )
        assert seller_only.status_code == 403
