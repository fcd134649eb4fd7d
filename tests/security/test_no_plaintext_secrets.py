"""DESIGN §9 (5) after a full flow: the market of world.py (registration,
real-name verification, payment passwords, key imports, a purchase delivered
and revealed, a manual delivery, exports, tickets the buyer pasted a key
into) and whatever else this session did. Not one plaintext card key,
password, OTP, payment password or ID number in any database of the run,
any message of its topics, or any log.

Collected last in the session (conftest.py), so it also sees what the other
security tests sent."""

from __future__ import annotations

from tests.security.leaks import find_leaks, otps_sent, scan_platform
from tests.security.world import BUYER, SELLER, World

SERVICES_WITH_DATA = (
    "identity",
    "catalog",
    "inventory",
    "ordering",
    "payment",
    "delivery",
    "aftersales",
)


async def test_no_plaintext_secret_in_any_database_topic_or_log(audited: World) -> None:
    world = audited
    platform = world.platform
    # The plaintext paths, once more: a reveal, both exports, a manual key.
    reveal = await world.call(BUYER, "delivery", "POST", f"/vault/{world.ids['vault_key']}/reveal")
    assert reveal.json()["secret"] in world.secrets.card_keys
    for export_format in ("csv", "txt"):
        export = await world.call(
            BUYER, "delivery", "GET", "/vault/export", params={"format": export_format}
        )
        assert reveal.json()["secret"] in export.text
    imported = await world.call(
        SELLER,
        "inventory",
        "POST",
        f"/offers/{world.ids['offer']}/imports",
        json={"format": "csv", "content": f"{world.new_card_key()},2031-01-01T00:00:00+08:00"},
        headers={"Idempotency-Key": "leak-scan-import"},
    )
    assert imported.status_code in (200, 201), imported.text
    # The buyer pastes the key into a ticket, retyped and in a screenshot's
    # address: after-sales keeps the key's id, never the key.
    secret = reveal.json()["secret"]
    retyped = secret.lower().replace("-", " ")
    pasted = await world.call(
        BUYER,
        "aftersales",
        "POST",
        f"/tickets/{world.ids['ticket']}/messages",
        json={
            "text": f"还是不行：{secret}，我也试过 {retyped}",
            "evidence_urls": [f"https://img.example.com/{secret}.png"],
        },
    )
    assert pasted.status_code == 201, pasted.text
    assert secret not in pasted.text and retyped not in pasted.text
    key_id = world.ids["vault_key"]
    last = pasted.json()["messages"][-1]
    assert last["text"] == f"还是不行：[card key {key_id}]，我也试过 [card key {key_id}]"
    assert last["evidence_urls"] == [f"https://img.example.com/[card key {key_id}].png"]
    opening = pasted.json()["messages"][0]["text"]
    assert f"[card key {key_id}]" in opening  # the description the world pasted it into

    codes = await otps_sent(platform)
    wanted = {
        "password": world.secrets.passwords,
        "payment password": world.secrets.payment_passwords,
        "ID number": world.secrets.id_numbers,
        "card key": world.secrets.card_keys,
        "OTP": set(codes),
    }
    for kind, values in wanted.items():
        assert values, f"the world typed no {kind}: the scan would prove nothing"
    scan = await scan_platform(platform, {value for values in wanted.values() for value in values})

    assert scan.leaks == [], "plaintext secrets found:\n" + "\n".join(scan.leaks[:50])
    # The scan read real data: every service's database, topics, logs.
    prefix = platform.database_prefix
    assert {f"{prefix}_{service}" for service in SERVICES_WITH_DATA} <= set(scan.databases)
    assert scan.documents > 200 and scan.messages > 50 and scan.log_lines > 500, scan
    for service in SERVICES_WITH_DATA:
        assert any(f".{service}." in topic for topic in scan.topics), (service, scan.topics)
        assert f"{service}.log" in scan.logs, (service, scan.logs)


def test_the_scanner_finds_what_it_looks_for() -> None:
    """The scanner itself: secrets nested in documents, bytes and logs are
    found; a code is found as a whole token or an equal integer, never
    inside a longer number or an id."""
    document = {
        "_id": "x",
        "nested": [{"note": "key KAMI-ABC-123 sold"}],
        "code_as_int": 482913,
        "raw": b'{"password": "Hunter-22"}',
        "amount": 1482913,
        "id": "a482913b",
        "time": "17:24:33.482913Z",
    }
    leaks = find_leaks(document, ["KAMI-ABC-123", "482913", "Hunter-22", "110101"], "doc")
    assert sorted(leak.split(":")[0] for leak in leaks) == [
        "doc.code_as_int",
        "doc.nested[0].note",
        "doc.raw",
    ]
    assert find_leaks("sms: your code is 482913.", ["482913"], "log")
