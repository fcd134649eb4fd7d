"""The leak scanner of DESIGN §9 (5): no plaintext card key, password, OTP,
payment password or ID number in any database field, Kafka message or log
line.

`find_leaks` searches one value (a document, a message, a log) for given
secrets; `scan_platform` runs it over everything a platform run left behind:
every database of the run, every message of every topic under the run's
topic prefix, and every service's log. Short all-digit secrets (OTPs,
payment passwords) are matched as whole tokens and as equal integers, so a
code is not "found" inside a longer number or an id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from kami_events.mongo import connect
from kami_local import Platform

# Where Kami's stand-ins for the outside world keep what they were sent: the
# phone network's inbox of the SMS codes (that is where an OTP belongs).
OUTSIDE_WORLD_DATABASES = ("identity_sms_sink",)


def _is_code(secret: str) -> bool:
    return secret.isdigit() and len(secret) <= 8


def find_leaks(value: Any, secrets: Iterable[str], where: str) -> list[str]:
    """Where any of `secrets` occurs in `value` (nested documents, lists,
    strings, bytes, integers), in plaintext."""
    wanted = [s for s in secrets if s]
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            found += find_leaks(str(key), wanted, f"{where} (a key)")
            found += find_leaks(item, wanted, f"{where}.{key}")
    elif isinstance(value, list | tuple | set):
        for index, item in enumerate(value):
            found += find_leaks(item, wanted, f"{where}[{index}]")
    elif isinstance(value, bytes | bytearray):
        # Undecodable bytes become U+FFFD; every secret's own bytes survive.
        found += find_leaks(bytes(value).decode("utf-8", errors="replace"), wanted, where)
    elif isinstance(value, bool):
        pass
    elif isinstance(value, int):
        found += [f"{where}: {s}" for s in wanted if _is_code(s) and value == int(s)]
    elif isinstance(value, str):
        for secret in wanted:
            if _is_code(secret):
                hit = re.search(rf"(?<![0-9A-Za-z]){secret}(?![0-9A-Za-z])", value)
            else:
                hit = re.search(re.escape(secret), value)
            if hit:
                start = max(hit.start() - 40, 0)
                found.append(f"{where}: {secret} in …{value[start : hit.end() + 40]!r}…")
    return found


@dataclass
class Scan:
    databases: list[str] = field(default_factory=list)
    documents: int = 0
    topics: list[str] = field(default_factory=list)
    messages: int = 0
    logs: list[str] = field(default_factory=list)
    log_lines: int = 0
    leaks: list[str] = field(default_factory=list)


async def otps_sent(platform: Platform) -> list[str]:
    """Every code the run's SMS stand-in delivered (to the phone network)."""
    client = connect(platform.mongodb_uri, app_name="kami-leak-scan")
    try:
        sink = client[f"{platform.database_prefix}_identity_sms_sink"]["messages"]
        texts = [doc["text"] async for doc in sink.find({}, {"text": 1})]
    finally:
        await client.close()
    return sorted({m for text in texts for m in re.findall(r"(?<!\d)\d{6}(?!\d)", text)})


async def scan_platform(platform: Platform, secrets: Iterable[str]) -> Scan:
    wanted = sorted(set(secrets))
    scan = Scan()
    await _scan_databases(platform, wanted, scan)
    await _scan_topics(platform, wanted, scan)
    for log in sorted((platform.home / "logs").glob("*.log")):
        text = log.read_text(errors="replace")
        scan.logs.append(log.name)
        scan.log_lines += text.count("\n")
        scan.leaks += find_leaks(text, wanted, f"log {log.name}")
    return scan


async def _scan_databases(platform: Platform, secrets: list[str], scan: Scan) -> None:
    prefix = f"{platform.database_prefix}_"
    skipped = {prefix + name for name in OUTSIDE_WORLD_DATABASES}
    client = connect(platform.mongodb_uri, app_name="kami-leak-scan")
    try:
        for name in sorted(await client.list_database_names()):
            if not name.startswith(prefix) or name in skipped:
                continue
            scan.databases.append(name)
            database = client[name]
            for collection in await database.list_collection_names():
                async for document in database[collection].find():
                    scan.documents += 1
                    scan.leaks += find_leaks(
                        document, secrets, f"mongo {name}.{collection} {document.get('_id')}"
                    )
    finally:
        await client.close()


async def _scan_topics(platform: Platform, secrets: list[str], scan: Scan) -> None:
    assert platform.topic_prefix, "a scan needs the run's own topic namespace"
    admin = AIOKafkaAdminClient(bootstrap_servers=platform.kafka_bootstrap)
    await admin.start()
    try:
        scan.topics = sorted(
            t for t in await admin.list_topics() if t.startswith(f"{platform.topic_prefix}.")
        )
        described = await admin.describe_topics(scan.topics) if scan.topics else []
    finally:
        await admin.close()
    partitions = [
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        for partition in topic["partitions"]
    ]
    if not partitions:
        return
    consumer = AIOKafkaConsumer(
        bootstrap_servers=platform.kafka_bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, records in batch.items():
                for record in records:
                    scan.messages += 1
                    where = f"kafka {tp.topic}@{record.offset}"
                    scan.leaks += find_leaks(record.value or b"", secrets, where)
                    scan.leaks += find_leaks(record.key or b"", secrets, f"{where} key")
                    for name, value in record.headers:
                        scan.leaks += find_leaks(value, secrets, f"{where} header {name}")
            remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()
