"""The identity service end to end on FerretDB and Kafka: the full user
journey over HTTP, its events on the real topic, and no secret at rest, on
the wire or in the logs."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import jwt
import pytest
from aiokafka import ConsumerRecord

from kami_events.catalogue.identity import IdentityVerified, KycTier
from kami_events.serialization import decode
from kami_events.store import MongoEventStore
from kami_events.topics import topic_for
from tests.integration.conftest import eventually
from tests.integration.identity.conftest import OPERATOR_PHONE, PASSWORD, Identity
from tests.integration.kafka_helpers import header, read_topic
from tests.security.leaks import find_leaks
from tests.unit.identity.data import resident_id

TOPIC = topic_for("identity.user")  # kami.identity.user.v1 unless KAMI_TOPIC_PREFIX
BUYER_PHONE = "13812345678"
# Sequence code 999: the simulated provider times out once, then approves.
ID_NUMBER = resident_id("19900307", sequence="999")
LIVENESS = "liveness-result-7f3a9c"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error_code(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


async def test_registration_to_suspension_with_events_on_kafka_and_no_secret_anywhere(
    identity: Identity, kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for name in ("kami_identity", "kami_events", "kami_web"):
        caplog.set_level(logging.DEBUG, logger=name)
    client = identity.client

    operator = await identity.sign_up(OPERATOR_PHONE)
    buyer = await identity.sign_up(BUYER_PHONE)
    user_id = buyer["user_id"]
    as_buyer = bearer(buyer["access_token"])
    as_operator = bearer(operator["access_token"])

    me = (await client.get("/me", headers=as_buyer)).json()
    assert (me["phone_masked"], me["roles"], me["tier"]) == ("138****5678", ["buyer"], "phone")

    # L1: legal name and ID number.
    l1 = await client.post(
        "/me/real-name", json={"legal_name": "张三", "id_number": ID_NUMBER}, headers=as_buyer
    )
    assert l1.status_code == 200 and l1.json()["tier"] == "real_name", l1.text

    # L2: the provider times out; the request stays pending and the poller retries it.
    l2 = await client.post(
        "/me/advanced-verification", json={"liveness_token": LIVENESS}, headers=as_buyer
    )
    assert (l2.status_code, l2.json()["status"]) == (200, "pending"), l2.text

    async def l2_approved() -> bool:
        status = await client.get("/me/advanced-verification", headers=as_buyer)
        return bool(status.json()["status"] == "approved")

    await eventually(l2_approved, message="the pending L2 request was never approved")
    me = (await client.get("/me", headers=as_buyer)).json()
    assert me["tier"] == "advanced"
    assert me["limits"]["daily_payment_limit"] == 5_000_000
    assert me["id_number_masked"] == f"1101**********{ID_NUMBER[-4:]}"
    assert me["advanced_verification"]["attempts"] == 2

    # An operator approves the seller; the role is in the next token.
    approved = await client.post(
        f"/users/{user_id}/seller-approval", json={"shop_name": "Card Shop"}, headers=as_operator
    )
    assert approved.status_code == 200 and "seller" in approved.json()["roles"]
    refreshed = await client.post("/auth/refresh", json={"refresh_token": buyer["refresh_token"]})
    assert refreshed.status_code == 200
    claims = jwt.decode(
        refreshed.json()["access_token"],
        identity.keys.public_key_pem,
        algorithms=["ES256"],
        audience="kami",
    )
    assert (claims["roles"], claims["tier"]) == (["buyer", "seller"], "advanced")

    # The operator suspends the user: refresh, login and /me are refused at once.
    suspended = await client.post(
        f"/users/{user_id}/suspension", json={"reason": "fraud_suspected"}, headers=as_operator
    )
    assert suspended.status_code == 200 and suspended.json()["suspended"] is True
    refresh_after = await client.post(
        "/auth/refresh", json={"refresh_token": refreshed.json()["refresh_token"]}
    )
    assert error_code(refresh_after) == (401, "session_revoked")
    assert error_code(await client.get("/me", headers=as_buyer)) == (403, "account_suspended")
    login_after = await client.post(
        "/auth/login", json={"phone": BUYER_PHONE, "password": PASSWORD}
    )
    assert error_code(login_after) == (403, "account_suspended")

    # The five event types came out through the outbox, in order, on the real topic.
    expected = [
        "UserRegistered",
        "PhoneVerified",
        "IdentityVerified",
        "IdentityVerified",
        "IdentityVerified",
        "SellerApproved",
        "UserSuspended",
    ]

    def of_buyer(records: list[ConsumerRecord[Any, Any]]) -> list[ConsumerRecord[Any, Any]]:
        return [r for r in records if r.key == user_id.encode()]

    records = of_buyer(
        await read_topic(kafka_bootstrap, TOPIC, lambda rs: len(of_buyer(rs)) >= len(expected))
    )
    assert [header(r, "event_type") for r in records] == expected
    envelopes = [decode(r.value) for r in records]
    assert [e.aggregate_version for e in envelopes] == list(range(1, 8))
    assert {e.producer for e in envelopes} == {"identity"}
    tiers = [e.payload.tier for e in envelopes if isinstance(e.payload, IdentityVerified)]
    assert tiers == [KycTier.PHONE, KycTier.REAL_NAME, KycTier.ADVANCED]
    assert envelopes[-1].payload.model_dump()["suspended_by"] == operator["user_id"]
    # The relay checkpoints commits just after Kafka acknowledged them.
    await eventually(
        lambda: _none_unpublished(identity.db),
        message="the outbox still holds unpublished commits",
    )

    # No OTP, password, ID number (or L2 evidence) in plaintext: not in any
    # collection of identity's database, not on Kafka, not in the logs.
    secrets = [PASSWORD, ID_NUMBER, LIVENESS]
    codes = identity.codes_sent
    assert len(codes) == 2
    leaks: list[str] = []
    for name in await identity.db.list_collection_names():
        async for doc in identity.db[name].find():
            leaks += find_leaks(doc, [*secrets, *codes], name)
    for record in records:
        leaks += find_leaks(bytes(record.value), [*secrets, *codes], f"kafka@{record.offset}")
    leaks += find_leaks(caplog.text, [*secrets, *codes], "logs")
    assert leaks == []
    # The scan looked at real data: the collections and logs are there.
    assert {"accounts", "otp_challenges", "id_claims", "advanced_verifications"} <= set(
        await identity.db.list_collection_names()
    )
    assert f"user {user_id} registered" in caplog.text


async def test_two_accounts_racing_with_one_id_number_verify_exactly_one(
    identity: Identity,
) -> None:
    for pair in range(3):
        id_number = resident_id("19850612", sequence=f"{pair + 100}")
        first = await identity.sign_up(f"1381234{pair}001")
        second = await identity.sign_up(f"1381234{pair}002")
        responses = await asyncio.gather(
            *(
                identity.client.post(
                    "/me/real-name",
                    json={"legal_name": "李四", "id_number": id_number},
                    headers=bearer(tokens["access_token"]),
                )
                for tokens in (first, second)
            )
        )
        outcomes = sorted(r.status_code for r in responses)
        assert outcomes == [200, 409], [r.text for r in responses]
        refused = next(r for r in responses if r.status_code == 409)
        assert refused.json()["error"]["code"] == "id_number_in_use"
        winner = [first, second][[r.status_code for r in responses].index(200)]["user_id"]

        claims = (
            await identity.db["id_claims"]
            .find({"user_id": {"$in": [first["user_id"], second["user_id"]]}})
            .to_list()
        )
        assert [(c["user_id"], c["confirmed"]) for c in claims] == [(winner, True)]
        verified = 0
        for tokens in (first, second):
            me = (await identity.client.get("/me", headers=bearer(tokens["access_token"]))).json()
            verified += me["tier"] == "real_name"
        assert verified == 1


async def test_one_refresh_token_used_twice_at_once_ends_the_session(identity: Identity) -> None:
    tokens = await identity.sign_up("13812345678")
    responses = await asyncio.gather(
        *(
            identity.client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
            for _ in range(2)
        )
    )
    assert sorted(r.status_code for r in responses) == [200, 401]
    refused = next(r for r in responses if r.status_code == 401)
    assert refused.json()["error"]["code"] == "refresh_token_reused"
    winner = next(r for r in responses if r.status_code == 200).json()
    after = await identity.client.post(
        "/auth/refresh", json={"refresh_token": winner["refresh_token"]}
    )
    assert error_code(after) == (401, "session_revoked")


async def test_concurrent_wrong_codes_lock_after_exactly_five(identity: Identity) -> None:
    phone = "13812345678"
    await identity.client.post("/auth/otp", json={"phone": phone})
    code = await identity.last_code(phone)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    responses = await asyncio.gather(
        *(
            identity.client.post("/auth/otp/verify", json={"phone": phone, "code": wrong})
            for _ in range(8)
        )
    )
    codes = sorted(r.json()["error"]["code"] for r in responses)
    assert codes.count("otp_incorrect") == 4 and codes.count("otp_locked") == 4, codes
    right = await identity.client.post("/auth/otp/verify", json={"phone": phone, "code": code})
    assert error_code(right) == (429, "otp_locked")
    latest = await identity.db["otp_challenges"].find_one({"key": phone}, sort=[("rev", -1)])
    assert latest is not None and latest["attempts"] == 5


async def test_purging_expired_data_keeps_live_sessions_working(identity: Identity) -> None:
    phone = "13812345678"
    tokens = await identity.sign_up(phone)
    rotated = (
        await identity.client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    ).json()
    families = identity.db["refresh_families"]
    assert await families.count_documents({"superseded": True}) == 1

    stores = identity.app.state.stores
    later = identity.runtime.clock() + timedelta(hours=3)
    assert await stores.purge_expired(later) > 0
    # Expired codes and counters are gone; only the session's latest revision is left.
    assert await identity.db["otp_challenges"].count_documents({}) == 0
    assert await identity.db["rate_limits"].count_documents({}) == 0
    assert await families.count_documents({}) == 1
    again = await identity.client.post(
        "/auth/refresh", json={"refresh_token": rotated["refresh_token"]}
    )
    assert again.status_code == 200, again.text


async def _none_unpublished(db: Any) -> bool:
    state = await MongoEventStore(db, producer="identity").outbox_state()
    return not [claim for claim in state.claims if not claim.void]
