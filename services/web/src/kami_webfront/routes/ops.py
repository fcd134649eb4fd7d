"""The operator console: seller applications, the verification queue,
suspended users, stuck sagas, dead-letter queues with redrive, the ledger's
trial balance, flagged sellers and frequent issues; support agents get the
ticket queue and nothing else (their role opens no other of these APIs).

Every page calls the services with the operator's own token: the services
decide what an operator may do, the console only shows it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Form
from fastapi.responses import Response

from kami_webfront.clients import BackendError
from kami_webfront.pages import Page, PageDep
from kami_webfront.roles import CONSOLE, OPERATOR, has_role, require_role
from kami_webfront.settings import BACKENDS

log = logging.getLogger(__name__)
router = APIRouter(prefix="/ops")

Operators = {OPERATOR}
REJECTION_REASONS = ("incomplete", "shop_name", "category", "other")


@router.get("")
async def home(page: PageDep) -> Response:
    me = await require_role(page, CONSOLE)
    return page.render("ops/home.html", me=me, is_operator=has_role(me, OPERATOR))


@router.get("/queue")
async def ticket_queue(page: PageDep) -> Response:
    await require_role(page, CONSOLE)
    found = await page.backends.get("aftersales", "/queue", token=page.token)
    return page.render("ops/queue.html", tickets=found["tickets"])


# -- sellers and users ---------------------------------------------------------------------


@router.get("/applications")
async def applications(page: PageDep, done: str = "") -> Response:
    await require_role(page, Operators)
    found = await page.backends.get("identity", "/seller-applications", token=page.token)
    if done in ("approved", "rejected"):
        page.flashes.append(page.t(f"ops.applications.{done}"))
    return page.render(
        "ops/applications.html",
        applications=found["applications"],
        reasons=REJECTION_REASONS,
    )


@router.post("/applications/{user_id}/approve")
async def approve(
    page: PageDep,
    user_id: str,
    shop_name: Annotated[str, Form(min_length=1, max_length=100)],
    category: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    await require_role(page, Operators)
    await page.backends.post(
        "identity",
        f"/users/{user_id}/seller-approval",
        token=page.token,
        json={"shop_name": shop_name, "category": category or None},
    )
    return page.redirect("/ops/applications?done=approved")


@router.post("/applications/{user_id}/reject")
async def reject(
    page: PageDep,
    user_id: str,
    reason: Annotated[str, Form(pattern=r"^(incomplete|shop_name|category|other)$")],
) -> Response:
    await require_role(page, Operators)
    await page.backends.post(
        "identity",
        f"/seller-applications/{user_id}/rejection",
        token=page.token,
        json={"reason": page.t(f"ops.applications.reason.{reason}")},
    )
    return page.redirect("/ops/applications?done=rejected")


@router.get("/verifications")
async def verifications(page: PageDep) -> Response:
    await require_role(page, Operators)
    found = await page.backends.get("identity", "/verifications/pending", token=page.token)
    return page.render("ops/verifications.html", verifications=found["verifications"])


@router.get("/suspended")
async def suspended(page: PageDep) -> Response:
    await require_role(page, Operators)
    found = await page.backends.get("identity", "/users/suspended", token=page.token)
    return page.render("ops/suspended.html", users=found["users"])


# -- the platform's health ---------------------------------------------------------------------


@router.get("/sagas")
async def stuck_sagas(page: PageDep) -> Response:
    await require_role(page, Operators)
    found = await page.backends.get("ordering", "/sagas/past-deadline", token=page.token)
    return page.render("ops/sagas.html", overdue=found)


@router.get("/dead-letters")
async def dead_letters(page: PageDep) -> Response:
    await require_role(page, Operators)
    return page.render("ops/dead_letters.html", queues=await _all_dead_letters(page))


async def _all_dead_letters(page: Page) -> list[dict[str, Any]]:
    """Every service's queue, asked at once (each read scans a Kafka topic)."""
    return list(await asyncio.gather(*(_dead_letters_of(page, name) for name in BACKENDS)))


async def _dead_letters_of(page: Page, service: str) -> dict[str, Any]:
    """One service's queue; a service that does not answer shows as such
    (the others' queues still show)."""
    try:
        found: dict[str, Any] = await page.backends.get(service, "/dead-letters", token=page.token)
    except BackendError as exc:
        if exc.status in (401, 403):
            raise
        log.info("dead letters of %s unavailable: %s", service, exc)
        return {"service": service, "error": exc.message, "dead_letters": []}
    return found


@router.post("/dead-letters/{service}/redrive")
async def redrive(
    page: PageDep,
    service: str,
    letter_id: Annotated[str, Form(pattern=r"^(all|\d{1,9}:\d{1,18})$")],
) -> Response:
    await require_role(page, Operators)
    if service not in BACKENDS:
        raise BackendError("web", 404, "unknown_service", page.t("ops.dlq.unknown_service"))
    body = {"all": True} if letter_id == "all" else {"ids": [letter_id]}
    report = await page.backends.post(service, "/dead-letters/redrive", token=page.token, json=body)
    return page.render("ops/dead_letters.html", queues=await _all_dead_letters(page), report=report)


@router.get("/ledger")
async def ledger(page: PageDep) -> Response:
    await require_role(page, Operators)
    trial = await page.backends.get("payment", "/ledger/trial-balance", token=page.token)
    return page.render("ops/ledger.html", trial=trial)


# -- sellers' quality ----------------------------------------------------------------------------


@router.get("/flagged")
async def flagged(page: PageDep) -> Response:
    await require_role(page, Operators)
    found = await page.backends.get("aftersales", "/reports/flagged-sellers", token=page.token)
    return page.render("ops/flagged.html", sellers=found["sellers"])


@router.get("/flagged/{seller_id}")
async def seller_report(page: PageDep, seller_id: str) -> Response:
    await require_role(page, Operators)
    report = await page.backends.get(
        "aftersales", f"/reports/sellers/{seller_id}", token=page.token
    )
    return page.render("ops/seller_report.html", report=report)


@router.get("/issues")
async def issues(page: PageDep, window: str = "24h") -> Response:
    await require_role(page, Operators)
    chosen = window if window in ("24h", "7d") else "24h"
    report = await page.backends.get(
        "aftersales", "/reports/issues", token=page.token, params={"window": chosen}
    )
    return page.render("ops/issues.html", report=report, window=chosen)
