"""Aftersales' read models in MongoDB, each fed by one kind of event.

| collection | `_id` | written by | holds |
|---|---|---|---|
| `orders` | order id | ordering's events (one partition per order) | `OrderFacts` |
| `arrivals` | order id | `ArrivalConfirmed` (insert once) | the buyer confirmed |
| `settlements` | order id | `FundsSettled` (insert once) | the money reached the seller |
| `buyers` | user id | `IdentityVerified`, `UserSuspended` (newest wins) | priority, suspension |
| `tickets` | ticket id | the ticket's events (one partition per ticket) | list summaries |
| `open_tickets` | ticket id | the same; deleted when resolved | queue, SLA deadlines |
| `ticket_refunds` | ticket id | `OrderRefundRequested`, `OrderRefunded` | a refund's progress |
| `refund_tickets` | refund id | `OrderRefundRequested` (insert once) | a refund's ticket |
| `open_claims` | order id | the API (insert once) | the one open ticket of an order |
| `messages` | `<ticket id>:<seq>` | the API (insert once per seq) | messages and evidence |
| `stock` | offer id | inventory's `StockChanged` (newest version wins) | sellable keys per pool |
| `replacements` | order id | `KeyReplaced`, `KeyReplacementFailed` | new keys, or why not |

Each document has one writer at a time (its stream's partition, or an
insert under a unique id), so plain `$set`s never lose a concurrent write;
every read on a request path is by `_id`, or scans a small collection
(`open_tickets` holds only tickets waiting for an agent).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from kami_aftersales.domain.claims import OrderFacts, OrderStage
from kami_events.mongo import Document, write_newer

MAX_MESSAGES = 200


@dataclass(frozen=True)
class TicketMessage:
    seq: int
    author_id: str
    author_role: str
    text: str
    evidence_urls: tuple[str, ...]
    posted_at: datetime


class Stores:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.orders: AsyncCollection[Document] = db["orders"]
        self.arrivals: AsyncCollection[Document] = db["arrivals"]
        self.settlements: AsyncCollection[Document] = db["settlements"]
        self.buyers: AsyncCollection[Document] = db["buyers"]
        self.tickets: AsyncCollection[Document] = db["tickets"]
        self.open_tickets: AsyncCollection[Document] = db["open_tickets"]
        self.ticket_refunds: AsyncCollection[Document] = db["ticket_refunds"]
        self.refund_tickets: AsyncCollection[Document] = db["refund_tickets"]
        self.open_claims: AsyncCollection[Document] = db["open_claims"]
        self.messages: AsyncCollection[Document] = db["messages"]
        self.flagged: AsyncCollection[Document] = db["flagged_sellers"]
        self.stock: AsyncCollection[Document] = db["stock"]
        self.replacements: AsyncCollection[Document] = db["replacements"]

    async def ensure_indexes(self) -> None:
        # Used on MongoDB; FerretDB 1.24 scans anyway (the lists are small per buyer).
        await self.tickets.create_index(
            [("buyer_id", ASCENDING), ("opened_at", ASCENDING)], name="buyer_tickets"
        )
        await self.tickets.create_index(
            [("seller_id", ASCENDING), ("opened_at", ASCENDING)], name="seller_tickets"
        )

    # -- orders ------------------------------------------------------------------------

    async def record_order(self, order_id: str, version: int, fields: Document) -> None:
        """Ordering's events of one order arrive in order; a redelivered older one
        (an operator's replay) must not set the stage back."""
        stage = fields.pop("stage", None)
        if stage is not None and await write_newer(
            self.orders, order_id, version, {**fields, "stage": stage}, guard="stage_version"
        ):
            return
        # An older event again: its facts still count, its stage does not.
        if fields:
            await self.orders.update_one({"_id": order_id}, {"$set": fields}, upsert=True)

    async def record_refund_requested(
        self, order_id: str, refund_id: str, amount: int, ticket_id: str | None, source: str
    ) -> None:
        await self.orders.update_one(
            {"_id": order_id}, {"$set": {f"refunds.{refund_id}": amount}}, upsert=True
        )
        if ticket_id is None:
            return
        with contextlib.suppress(DuplicateKeyError):
            await self.refund_tickets.insert_one({"_id": refund_id, "ticket_id": ticket_id})
        # The order's events come in order on one partition: requested, then refunded.
        await self.ticket_refunds.update_one(
            {"_id": ticket_id},
            {
                "$set": {
                    "refund_id": refund_id,
                    "amount": amount,
                    "source": source,
                    "status": "requested",
                }
            },
            upsert=True,
        )

    async def record_refunded(self, refund_id: str, amount: int, source: str) -> str | None:
        link = await self.refund_tickets.find_one({"_id": refund_id})
        if link is None:
            return None
        ticket_id = str(link["ticket_id"])
        await self.ticket_refunds.update_one(
            {"_id": ticket_id},
            {
                "$set": {
                    "refund_id": refund_id,
                    "amount": amount,
                    "source": source,
                    "status": "refunded",
                }
            },
            upsert=True,
        )
        return ticket_id

    async def ticket_refund(self, ticket_id: str) -> Document | None:
        return await self.ticket_refunds.find_one({"_id": ticket_id})

    async def record_arrival(self, order_id: str, at: datetime) -> None:
        with contextlib.suppress(DuplicateKeyError):
            await self.arrivals.insert_one({"_id": order_id, "at": at})

    async def record_settlement(self, order_id: str, at: datetime) -> None:
        with contextlib.suppress(DuplicateKeyError):
            await self.settlements.insert_one({"_id": order_id, "at": at})

    async def order_facts(self, order_id: str) -> OrderFacts | None:
        doc = await self.orders.find_one({"_id": order_id})
        if doc is None or "buyer_id" not in doc:
            return None
        arrival = await self.arrivals.find_one({"_id": order_id}, {"_id": 1})
        settled = await self.settlements.find_one({"_id": order_id}, {"_id": 1})
        refunds: dict[str, Any] = doc.get("refunds", {})
        delivered = list(doc.get("delivered_key_ids", []))
        replaced = await self.replacements.find_one({"_id": order_id})
        if replaced is not None:
            # The keys the buyer holds now: each replacement in delivery's order.
            done = [r for r in replaced.get("tickets", {}).values() if r.get("key_ids")]
            for replacement in sorted(done, key=lambda r: int(r["version"])):
                old, new = replacement["replaced_key_ids"], replacement["key_ids"]
                pairs = dict(zip(old, new, strict=True))
                delivered = [pairs.get(k, k) for k in delivered]
        return OrderFacts(
            order_id=order_id,
            buyer_id=doc["buyer_id"],
            seller_id=doc["seller_id"],
            offer_id=doc["offer_id"],
            product_id=doc.get("product_id", ""),
            quantity=int(doc.get("quantity", 1)),
            unit_price=int(doc.get("unit_price", 0)),
            stage=OrderStage(doc.get("stage", OrderStage.PLACED.value)),
            paid_amount=int(doc.get("paid_amount", 0)),
            delivered_key_ids=tuple(delivered),
            guarantee_ends_at=doc.get("guarantee_ends_at"),
            arrival_confirmed=arrival is not None,
            refunds_requested=sum(int(v) for v in refunds.values()),
            settled=settled is not None,
            refund_ids=tuple(refunds),
        )

    # -- replacements ---------------------------------------------------------------------

    async def record_replacement(
        self,
        order_id: str,
        ticket_id: str,
        fields: Document,
    ) -> None:
        """What became of a ticket's replacement: the new keys (`KeyReplaced`,
        with delivery's stream `version`), or why the pool could not supply
        them (`KeyReplacementFailed`). Each ticket's outcome comes once, and
        an order has one open ticket at a time, so each document has one
        writer at a time."""
        await self.replacements.update_one(
            {"_id": order_id}, {"$set": {f"tickets.{ticket_id}": fields}}, upsert=True
        )

    async def replacement_of(self, order_id: str, ticket_id: str) -> Document | None:
        doc = await self.replacements.find_one({"_id": order_id})
        found: Document | None = doc.get("tickets", {}).get(ticket_id) if doc else None
        return found

    # -- stock of the offers' pools ----------------------------------------------------

    async def record_stock(self, offer_id: str, version: int, available: int) -> None:
        """Inventory's latest count of an offer's sellable keys (a pool's events
        come in order on one partition; a replayed older one changes nothing)."""
        await write_newer(self.stock, offer_id, version, {"available": available})

    async def stock_of(self, offer_id: str) -> int:
        doc = await self.stock.find_one({"_id": offer_id}, {"available": 1})
        return int(doc["available"]) if doc else 0

    # -- buyers ------------------------------------------------------------------------

    async def record_priority(self, user_id: str, version: int, tier: str, priority: int) -> None:
        await write_newer(self.buyers, user_id, version, {"tier": tier, "priority": priority})

    async def record_suspension(self, user_id: str, version: int, until: datetime | None) -> None:
        """Identity's `UserSuspended`; its version is kept apart from the
        priority's (both come from the user's one stream, in order)."""
        await write_newer(
            self.buyers,
            user_id,
            version,
            {"suspended": True, "suspended_until": until},
            guard="suspension_version",
        )

    async def is_suspended(self, user_id: str, now: datetime) -> bool:
        doc = await self.buyers.find_one({"_id": user_id}, {"suspended": 1, "suspended_until": 1})
        if doc is None or not doc.get("suspended"):
            return False
        until = doc.get("suspended_until")
        return until is None or now < until

    async def priority_of(self, user_id: str) -> int:
        doc = await self.buyers.find_one({"_id": user_id}, {"priority": 1})
        return int(doc["priority"]) if doc else 0

    # -- tickets -----------------------------------------------------------------------

    async def upsert_ticket(self, ticket_id: str, fields: Document) -> None:
        await self.tickets.update_one({"_id": ticket_id}, {"$set": fields}, upsert=True)

    async def ticket(self, ticket_id: str) -> Document | None:
        return await self.tickets.find_one({"_id": ticket_id})

    async def tickets_of_buyer(self, buyer_id: str, limit: int) -> list[Document]:
        cursor = self.tickets.find({"buyer_id": buyer_id}).sort("opened_at", -1).limit(limit)
        return [doc async for doc in cursor]

    async def tickets_of_seller(
        self, seller_id: str, limit: int, *, state: str | None = None
    ) -> list[Document]:
        """Tickets about the seller's orders, newest first (`state`: only those)."""
        query: Document = {"seller_id": seller_id}
        if state is not None:
            query["state"] = state
        cursor = self.tickets.find(query).sort("opened_at", -1).limit(limit)
        return [doc async for doc in cursor]

    async def put_in_queue(self, ticket_id: str, fields: Document) -> None:
        await self.open_tickets.update_one({"_id": ticket_id}, {"$set": fields}, upsert=True)

    async def refresh_queue(self, ticket_id: str, fields: Document) -> None:
        """Change a queued ticket's row, if it is (still) queued."""
        await self.open_tickets.update_one({"_id": ticket_id}, {"$set": fields})

    async def take_from_queue(self, ticket_id: str) -> None:
        await self.open_tickets.delete_one({"_id": ticket_id})

    async def queue(self) -> list[Document]:
        """Tickets waiting for an agent: higher after-sales priority first, then oldest."""
        docs = [doc async for doc in self.open_tickets.find({})]
        docs.sort(key=lambda d: (-int(d.get("priority", 0)), d["opened_at"], d["_id"]))
        return docs

    async def due_tickets(self, now: datetime) -> list[str]:
        return [
            str(doc["_id"])
            for doc in await self.queue()
            if doc.get("sla_due_at") is not None and doc["sla_due_at"] <= now
        ]

    # -- sellers with flags up (small: the periodic review walks it) -------------------------

    async def record_flags(self, seller_id: str, offer_ids: list[str], *, flagged: bool) -> None:
        if flagged:
            await self.flagged.update_one(
                {"_id": seller_id}, {"$set": {"offer_ids": offer_ids}}, upsert=True
            )
        else:
            await self.flagged.delete_one({"_id": seller_id})

    async def flagged_sellers(self) -> list[tuple[str, list[str]]]:
        return [(str(d["_id"]), list(d.get("offer_ids", []))) async for d in self.flagged.find({})]

    # -- one open ticket per order -------------------------------------------------------

    async def claim_order(self, order_id: str, ticket_id: str, at: datetime) -> str:
        """Make `ticket_id` the order's open ticket; returns the one that is."""
        try:
            await self.open_claims.insert_one({"_id": order_id, "ticket_id": ticket_id, "at": at})
            return ticket_id
        except DuplicateKeyError:
            doc = await self.open_claims.find_one({"_id": order_id})
            return str(doc["ticket_id"]) if doc else ticket_id

    async def open_ticket_of(self, order_id: str) -> Document | None:
        return await self.open_claims.find_one({"_id": order_id})

    async def release_order(self, order_id: str, ticket_id: str) -> None:
        await self.open_claims.delete_one({"_id": order_id, "ticket_id": ticket_id})

    # -- messages ----------------------------------------------------------------------

    async def add_message(
        self,
        ticket_id: str,
        *,
        author_id: str,
        author_role: str,
        text: str,
        evidence_urls: tuple[str, ...],
        at: datetime,
    ) -> int:
        """Append a message: the next sequence number is taken by a unique insert."""
        seq = len(await self.messages_of(ticket_id)) + 1
        while seq <= MAX_MESSAGES:
            try:
                await self.messages.insert_one(
                    {
                        "_id": _message_id(ticket_id, seq),
                        "ticket_id": ticket_id,
                        "seq": seq,
                        "author_id": author_id,
                        "author_role": author_role,
                        "text": text,
                        "evidence_urls": list(evidence_urls),
                        "posted_at": at,
                    }
                )
                return seq
            except DuplicateKeyError:
                seq += 1
        raise OverflowError(f"ticket {ticket_id} has {MAX_MESSAGES} messages")

    async def add_opening_message(
        self,
        ticket_id: str,
        *,
        author_id: str,
        author_role: str,
        text: str,
        evidence_urls: tuple[str, ...],
        at: datetime,
    ) -> None:
        """The claim's description and evidence: message 1, written once
        (before the ticket's commit, so a crash loses nothing; a retried
        request writes the same message, which is already there)."""
        with contextlib.suppress(DuplicateKeyError):
            await self.messages.insert_one(
                {
                    "_id": _message_id(ticket_id, 1),
                    "ticket_id": ticket_id,
                    "seq": 1,
                    "author_id": author_id,
                    "author_role": author_role,
                    "text": text,
                    "evidence_urls": list(evidence_urls),
                    "posted_at": at,
                }
            )

    async def messages_of(self, ticket_id: str) -> list[TicketMessage]:
        found: list[TicketMessage] = []
        for seq in range(1, MAX_MESSAGES + 1):
            doc = await self.messages.find_one({"_id": _message_id(ticket_id, seq)})
            if doc is None:
                break
            found.append(
                TicketMessage(
                    seq=seq,
                    author_id=doc["author_id"],
                    author_role=doc["author_role"],
                    text=doc["text"],
                    evidence_urls=tuple(doc.get("evidence_urls", [])),
                    posted_at=doc["posted_at"],
                )
            )
        return found


def _message_id(ticket_id: str, seq: int) -> str:
    return f"{ticket_id}:{seq:04d}"
