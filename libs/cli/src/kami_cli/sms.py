"""`kami sms last PHONE`: the local platform's SMS outbox.

Without a real SMS provider, identity hands its texts (the phone codes) to
the simulated carrier, which keeps them in `<prefix>_identity_sms_sink`,
collection `messages` (`kami_identity.adapters.sms.RecordingSmsSender`).
This reads that outbox as the phone's owner would read the phone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from pymongo.errors import PyMongoError

from kami_cli.config import CliSettings
from kami_cli.errors import CliError
from kami_identity.adapters.sms import RecordingSmsSender
from kami_identity.domain.phone import Phone
from kami_identity.domain.rejections import InvalidInput

SINK_COLLECTION = "messages"
_CODE = re.compile(r"(?<!\d)\d{6}(?!\d)")


@dataclass(frozen=True)
class Text:
    phone: str
    sent_at: datetime
    text: str

    @property
    def code(self) -> str | None:
        """The six-digit verification code the text carries, if any."""
        found = _CODE.search(self.text)
        return found.group() if found else None


def sink_database(settings: CliSettings) -> str:
    """Identity's default sink: `<identity's database>_sms_sink`."""
    return f"{settings.database('identity')}_sms_sink"


def phone_number(raw: str) -> str:
    """The number as identity stores it (`+86 139-0000-0002` -> `13900000002`)."""
    try:
        return Phone.parse(raw).number
    except InvalidInput as exc:
        raise CliError(f"{raw!r}: {exc.message}", 2) from None


async def last_text(settings: CliSettings, phone: str, database: str | None = None) -> Text:
    from kami_events.mongo import connect

    number = phone_number(phone)
    name = database or sink_database(settings)
    client = connect(settings.mongodb_uri, app_name="kami-cli", timeout_ms=5_000)
    try:
        db = client[name]
        if SINK_COLLECTION not in await db.list_collection_names():
            raise CliError(
                f"no SMS outbox at {name}.{SINK_COLLECTION} on {settings.mongodb_uri}: identity "
                "there has sent no text through the simulated carrier (the local platform's), "
                "or uses another database prefix (KAMI_DATABASE_PREFIX, --database-prefix)"
            )
        inbox = await RecordingSmsSender(db[SINK_COLLECTION]).inbox(number)
    except PyMongoError as exc:
        raise CliError(f"MongoDB at {settings.mongodb_uri} is unreachable: {exc}") from None
    finally:
        await client.close()
    if not inbox:
        raise CliError(f"no text was sent to {number} (outbox {name}.{SINK_COLLECTION})")
    sent_at, text = inbox[0]
    return Text(number, sent_at, text)
