"""Text messages to buyers. A real SMS provider plugs in behind `SmsSender`
(the same adapter pattern as identity's).

The default, `RecordingSmsSender`, is the simulated carrier for development,
tests and the demo: it records each message in a collection (`sms_messages`),
standing for the phone's inbox. Delivery's texts say *that* keys arrived and
where to reveal them; a secret never goes into a text.

Delivery knows a buyer's phone only masked (identity keeps the number), so a
text is addressed by user id and the provider resolves the number: the
masked phone is recorded to show which verified phone it went to.
"""

from __future__ import annotations

from pymongo.asynchronous.collection import AsyncCollection

from kami_events.clock import Clock, utc_now
from kami_events.mongo import Document


class RecordingSmsSender:
    def __init__(self, messages: AsyncCollection[Document], *, clock: Clock = utc_now) -> None:
        self._messages = messages
        self._clock = clock

    async def ensure_indexes(self) -> None:
        await self._messages.create_index("user_id")

    async def send(self, message_id: str, user_id: str, phone_masked: str, text: str) -> None:
        # Idempotent by message id, as real providers' client message ids are.
        await self._messages.update_one(
            {"_id": message_id},
            {
                "$setOnInsert": {
                    "user_id": user_id,
                    "phone_masked": phone_masked,
                    "text": text,
                    "sent_at": self._clock(),
                }
            },
            upsert=True,
        )

    async def inbox(self, user_id: str) -> list[str]:
        """Texts sent to the user, oldest first."""
        cursor = self._messages.find({"user_id": user_id}).sort("sent_at", 1)
        return [doc["text"] async for doc in cursor]
