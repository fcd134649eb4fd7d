"""Sending text messages. A real SMS provider plugs in behind `SmsSender`.

The default, `RecordingSmsSender`, is the simulated carrier for development,
tests and the demo: it writes each message into a collection of its own
database (`<identity's database>_sms_sink`), standing for the phone's inbox. It is not
identity's data, and it is never a log line: the message holds the code.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection

from kami_events.clock import Clock, utc_now
from kami_events.mongo import Document


class SmsSender(Protocol):
    async def send(self, phone: str, text: str) -> None:
        """Hand the message to the carrier; raise if it was not accepted."""


class RecordingSmsSender:
    def __init__(self, messages: AsyncCollection[Document], *, clock: Clock = utc_now) -> None:
        self._messages = messages
        self._clock = clock

    async def ensure_indexes(self) -> None:
        await self._messages.create_index([("phone", ASCENDING), ("sent_at", DESCENDING)])

    async def send(self, phone: str, text: str) -> None:
        await self._messages.insert_one({"phone": phone, "text": text, "sent_at": self._clock()})

    async def inbox(self, phone: str) -> list[tuple[datetime, str]]:
        """Messages sent to `phone`, newest first."""
        cursor = self._messages.find({"phone": phone}).sort("sent_at", DESCENDING)
        return [(doc["sent_at"], doc["text"]) async for doc in cursor]
