"""The operators' queues on FerretDB, over HTTP: a user applies to sell, the
operator finds the application, approves it and it leaves the queue; a
suspension is listed while it holds."""

from __future__ import annotations

from uuid import uuid4

from tests.integration.identity.conftest import OPERATOR_PHONE, Identity
from tests.unit.identity.data import resident_id


def _phone() -> str:
    return f"137{uuid4().int % 10**8:08d}"


async def test_an_application_is_queued_approved_and_a_suspension_listed(
    identity: Identity,
) -> None:
    client = identity.client
    operator = await identity.sign_up(OPERATOR_PHONE)
    as_operator = {"Authorization": f"Bearer {operator['access_token']}"}
    applicant = await identity.sign_up(_phone())
    as_applicant = {"Authorization": f"Bearer {applicant['access_token']}"}
    other = await identity.sign_up(_phone())
    as_other = {"Authorization": f"Bearer {other['access_token']}"}

    too_early = await client.post(
        "/me/seller-application", json={"shop_name": "卡密小铺"}, headers=as_applicant
    )
    assert too_early.status_code == 409
    assert too_early.json()["error"]["code"] == "real_name_required"
    verified = await client.post(
        "/me/real-name",
        json={"legal_name": "李四", "id_number": resident_id("19880101", sequence="417")},
        headers=as_applicant,
    )
    assert verified.status_code == 200, verified.text
    applied = await client.post(
        "/me/seller-application",
        json={"shop_name": "卡密小铺", "category": "games"},
        headers=as_applicant,
    )
    assert applied.status_code == 200, applied.text

    assert (await client.get("/seller-applications", headers=as_other)).status_code == 403
    queue = await client.get("/seller-applications", headers=as_operator)
    assert queue.status_code == 200, queue.text
    [entry] = [a for a in queue.json()["applications"] if a["user_id"] == applicant["user_id"]]
    assert (entry["shop_name"], entry["category"], entry["tier"]) == (
        "卡密小铺",
        "games",
        "real_name",
    )
    approved = await client.post(
        f"/users/{applicant['user_id']}/seller-approval",
        json={"shop_name": entry["shop_name"], "category": entry["category"]},
        headers=as_operator,
    )
    assert approved.status_code == 200, approved.text
    queue = await client.get("/seller-applications", headers=as_operator)
    assert applicant["user_id"] not in {a["user_id"] for a in queue.json()["applications"]}
    me = await client.get("/me", headers=as_applicant)
    assert me.json()["seller_application"]["status"] == "approved"

    suspended = await client.post(
        f"/users/{other['user_id']}/suspension",
        json={"reason": "fraud_suspected", "detail": "多次拒付"},
        headers=as_operator,
    )
    assert suspended.status_code == 200, suspended.text
    listed = await client.get("/users/suspended", headers=as_operator)
    assert listed.status_code == 200, listed.text
    [row] = [u for u in listed.json()["users"] if u["user_id"] == other["user_id"]]
    assert (row["reason"], row["detail"], row["until"]) == ("fraud_suspected", "多次拒付", None)
    assert row["suspended_by"] == operator["user_id"]
    assert applicant["user_id"] not in {u["user_id"] for u in listed.json()["users"]}

    pending = await client.get("/verifications/pending", headers=as_operator)
    assert pending.status_code == 200 and pending.json()["verifications"] == []
