"""The operators' queues on fakes: applications to sell, pending advanced
verifications, suspended users; each list checked against the user's stream."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from kami_events.catalogue.identity import Role, SuspensionReason
from kami_identity import handlers
from kami_identity.api import install_rejection_handler, router
from kami_identity.domain.rejections import Conflict, NotFound
from kami_identity.domain.seller_application import ApplicationStatus
from kami_identity.handlers import IdentityPolicy
from kami_web.auth import TokenVerifier, install_auth
from kami_web.errors import install_error_handlers
from tests.unit.identity.data import registered, resident_id
from tests.unit.identity.fakes import KEYS, harness
from tests.unit.identity.test_verification import LIVENESS, real_name_user

OPERATOR = "operator-1"


async def test_an_application_waits_in_the_queue_until_an_operator_approves_it() -> None:
    h = harness()
    early = await real_name_user(h, "13812345671", resident_id(sequence="101"))
    await handlers.apply_as_seller(h.deps, early, "早到的店", "games")
    h.clock.advance(timedelta(minutes=1))
    late = await real_name_user(h, "13812345672", resident_id(sequence="102"))
    await handlers.apply_as_seller(h.deps, late, "晚到的店", None)
    h.clock.advance(timedelta(minutes=1))
    # Amending a pending application keeps its place.
    amended = await handlers.apply_as_seller(h.deps, early, "  早到的店铺 ", "games")
    assert amended.shop_name == "早到的店铺"

    queue = await handlers.pending_seller_applications(h.deps)
    assert [a.application.user_id for a in queue] == [early, late]
    assert queue[0].tier is not None and queue[0].tier.value == "real_name"

    await handlers.approve_seller(h.deps, OPERATOR, early, amended.shop_name, "games")
    queue = await handlers.pending_seller_applications(h.deps)
    assert [a.application.user_id for a in queue] == [late]
    profile = await handlers.profile(h.deps, early)
    assert profile.seller_application is not None
    assert profile.seller_application.status is ApplicationStatus.APPROVED
    assert profile.seller_application.decided_by == OPERATOR
    with pytest.raises(Conflict) as again:
        await handlers.apply_as_seller(h.deps, early, "又一家", None)
    assert again.value.code == "already_seller"


async def test_a_seller_approved_while_its_record_says_pending_leaves_the_queue() -> None:
    h = harness()
    user = await real_name_user(h, "13812345673", resident_id(sequence="103"))
    await handlers.apply_as_seller(h.deps, user, "店", None)
    pending = await h.deps.seller_applications.get(user)
    assert pending is not None
    await handlers.approve_seller(h.deps, OPERATOR, user, "店")
    # As if the process died after the commit, before marking the record:
    marked = await h.deps.seller_applications.get(user)
    assert marked is not None and marked.value.status is ApplicationStatus.APPROVED
    assert await h.deps.seller_applications.put(user, pending.value, marked.rev)
    assert await handlers.pending_seller_applications(h.deps) == []


async def test_only_a_real_name_verified_user_applies_and_a_rejected_one_may_apply_again() -> None:
    h = harness()
    phone_only = await registered(h, "13812345674")
    with pytest.raises(Conflict) as refused:
        await handlers.apply_as_seller(h.deps, phone_only, "店", None)
    assert refused.value.code == "real_name_required"
    with pytest.raises(NotFound):
        await handlers.reject_seller_application(h.deps, OPERATOR, phone_only, "no")

    user = await real_name_user(h, "13812345675", resident_id(sequence="105"))
    await handlers.apply_as_seller(h.deps, user, "店", None)
    rejected = await handlers.reject_seller_application(h.deps, OPERATOR, user, "店名不合规")
    assert (rejected.status, rejected.rejection_reason) == (
        ApplicationStatus.REJECTED,
        "店名不合规",
    )
    assert await handlers.pending_seller_applications(h.deps) == []
    with pytest.raises(Conflict):
        await handlers.reject_seller_application(h.deps, OPERATOR, user, "again")
    h.clock.advance(timedelta(hours=1))
    again = await handlers.apply_as_seller(h.deps, user, "新店名", None)
    assert again.status is ApplicationStatus.PENDING and again.submitted_at == h.clock()
    assert [
        a.application.shop_name for a in await handlers.pending_seller_applications(h.deps)
    ] == ["新店名"]


async def test_pending_verifications_are_listed_until_the_provider_decides() -> None:
    h = harness()
    # The simulated provider times out on sequence 999 for the first attempt.
    h.provider.simulated.timeouts_before_answer = 1
    user = await real_name_user(h, "13812345676", resident_id(sequence="999"))
    await handlers.submit_advanced(h.deps, user, LIVENESS)
    [pending] = await handlers.pending_verifications(h.deps)
    assert pending.request.user_id == user and pending.phone_masked is not None
    for _ in range(3):
        h.clock.advance(timedelta(minutes=10))
        await handlers.retry_advanced_verifications(h.deps)
    assert (await handlers.advanced_status(h.deps, user)).status.value == "approved"
    assert await handlers.pending_verifications(h.deps) == []


async def test_suspended_users_are_listed_while_their_suspension_holds() -> None:
    h = harness()
    forever = await registered(h, "13812345677")
    brief = await registered(h, "13812345678")
    await handlers.suspend_user(h.deps, OPERATOR, forever, SuspensionReason.FRAUD_SUSPECTED, "x")
    h.clock.advance(timedelta(seconds=1))
    await handlers.suspend_user(
        h.deps,
        OPERATOR,
        brief,
        SuspensionReason.FRAUD_SUSPECTED,
        until=h.clock() + timedelta(hours=1),
    )
    listed = await handlers.suspended_users(h.deps)
    assert [u.user_id for u in listed] == [brief, forever]
    assert listed[1].detail == "x" and listed[1].until is None
    h.clock.advance(timedelta(hours=2))
    assert [u.user_id for u in await handlers.suspended_users(h.deps)] == [forever]
    with pytest.raises(NotFound):
        await handlers.suspend_user(h.deps, OPERATOR, "nobody", SuspensionReason.FRAUD_SUSPECTED)
    assert "nobody" not in await h.deps.suspensions.user_ids(10)


async def test_the_queues_are_for_operators_only_over_http() -> None:
    h = harness(IdentityPolicy())
    app = FastAPI()
    install_error_handlers(app)
    install_rejection_handler(app)
    install_auth(app, TokenVerifier(KEYS.settings(), now=h.clock))
    app.include_router(router)
    app.state.identity = h.deps
    user = await real_name_user(h, "13812345679", resident_id(sequence="109"))

    def bearer(*roles: Role, subject: str = user) -> dict[str, str]:
        return {"Authorization": f"Bearer {KEYS.user_token(subject, *roles, tier='real_name')}"}

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://identity"
    ) as client:
        applied = await client.post(
            "/me/seller-application",
            json={"shop_name": "小店", "category": "games"},
            headers=bearer(Role.BUYER),
        )
        assert applied.status_code == 200, applied.text
        assert applied.json()["status"] == "pending"
        me = await client.get("/me", headers=bearer(Role.BUYER))
        assert me.json()["seller_application"]["shop_name"] == "小店"
        for path in ("/seller-applications", "/verifications/pending", "/users/suspended"):
            for roles in ((Role.BUYER,), (Role.SELLER, Role.BUYER), (Role.SUPPORT,)):
                denied = await client.get(path, headers=bearer(*roles))
                assert denied.status_code == 403, (path, roles)
            assert (await client.get(path)).status_code == 401
        listed = await client.get(
            "/seller-applications", headers=bearer(Role.OPERATOR, subject="op")
        )
        assert [a["user_id"] for a in listed.json()["applications"]] == [user]
        assert listed.json()["applications"][0]["phone_masked"].startswith("138")
        rejected = await client.post(
            f"/seller-applications/{user}/rejection",
            json={"reason": "资料不全"},
            headers=bearer(Role.BUYER),
        )
        assert rejected.status_code == 403
        rejected = await client.post(
            f"/seller-applications/{user}/rejection",
            json={"reason": "资料不全"},
            headers=bearer(Role.OPERATOR, subject="op"),
        )
        assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
