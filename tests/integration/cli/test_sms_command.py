"""`kami sms last PHONE` on the real FerretDB: the outbox identity's simulated
carrier writes (through identity's own adapter), read back as a new user would."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from pymongo import AsyncMongoClient

from kami_events.mongo import Document
from kami_identity.adapters.sms import RecordingSmsSender
from tests.conftest import Servers
from tests.kami_command import kami


async def test_sms_last_prints_the_newest_text_to_the_phone_and_its_code(
    servers: Servers, mongo_client: AsyncMongoClient[Document], unique: Callable[[str], str]
) -> None:
    prefix = unique("smscli").replace("-", "_")
    sink = mongo_client[f"{prefix}_identity_sms_sink"]["messages"]
    sent_at = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
    times = iter([sent_at, sent_at + timedelta(minutes=1), sent_at + timedelta(minutes=2)])
    carrier = RecordingSmsSender(sink, clock=lambda: next(times))
    await carrier.send("13900000002", "【Kami】验证码 111111，5 分钟内有效。")
    await carrier.send("13900000002", "【Kami】验证码 222222，5 分钟内有效。")
    await carrier.send("13900000003", "【Kami】验证码 333333，5 分钟内有效。")
    env = {"KAMI_MONGODB_URI": servers.mongodb_uri, "KAMI_DATABASE_PREFIX": prefix}
    try:
        shown = await kami("sms", "last", "+86 139-0000-0002", env=env)
        assert shown.code == 0, shown
        assert "code 222222" in shown.stdout
        assert "2025-03-01T08:01:00+00:00" in shown.stdout
        assert "111111" not in shown.stdout

        code = await kami("sms", "last", "13900000003", "--code", env=env)
        assert code.code == 0, code
        assert code.stdout.strip() == "333333"

        nobody = await kami("sms", "last", "13900000004", env=env)
        assert nobody.code == 1, nobody
        assert "no text was sent to 13900000004" in nobody.stderr
    finally:
        await mongo_client.drop_database(f"{prefix}_identity_sms_sink")


async def test_sms_last_fails_clearly_without_an_outbox_or_with_a_bad_phone(
    servers: Servers, unique: Callable[[str], str]
) -> None:
    env = {"KAMI_MONGODB_URI": servers.mongodb_uri}
    elsewhere = await kami(
        "--database-prefix",
        unique("nosink").replace("-", "_"),
        "sms",
        "last",
        "13900000002",
        env=env,
    )
    assert elsewhere.code == 1, elsewhere
    assert "no SMS outbox at" in elsewhere.stderr

    bad = await kami("sms", "last", "12345", env=env)
    assert bad.code == 2, bad
    assert "11-digit mainland mobile number" in bad.stderr

    unreachable = await kami(
        "sms", "last", "13900000002", env={"KAMI_MONGODB_URI": "mongodb://127.0.0.1:9/"}
    )
    assert unreachable.code == 1, unreachable
    assert "unreachable" in unreachable.stderr
