"""A small market the security suite attacks: one account of every role, two
buyers and two sellers (so every owned thing has an owner and a non-owner),
a purchase carried to the buyer's vault, and after-sales tickets about the
buyer's orders. Built once per session over the public HTTP APIs, as people
would, and remembering every secret it typed so the leak scanner knows what
to look for."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import uuid4

import httpx

from kami_actors import PASSWORD, Person, resident_id, sign_up
from kami_events.catalogue.identity import Role
from kami_local import Platform
from kami_market import list_offer_with_keys, order_state, publish_product, until
from kami_web.auth import issue_service_token, issue_user_token
from tests.e2e.conftest import SUPPORT_PHONE

# Principals of the authorization matrix, by name.
ANONYMOUS = "anonymous"
BUYER = "buyer"  # owns the buyer's things
OTHER_BUYER = "other_buyer"
SELLER = "seller"  # owns the seller's things
OTHER_SELLER = "other_seller"
SUPPORT = "support"
OPERATOR = "operator"
SERVICE = "service"  # delivery's credential, the one inventory reveals keys to
OTHER_SERVICE = "other_service"  # a Kami service that may not reveal keys
# Aftersales' credential: delivery asks issuers about the buyer's keys, and
# clears ticket text of them, for it (only).
AFTERSALES_SERVICE = "aftersales_service"
PRINCIPALS = (
    ANONYMOUS,
    BUYER,
    OTHER_BUYER,
    SELLER,
    OTHER_SELLER,
    SUPPORT,
    OPERATOR,
    SERVICE,
    OTHER_SERVICE,
    AFTERSALES_SERVICE,
)


@dataclass
class Secrets:
    """Everything secret the world typed or was given, for the leak scanner."""

    passwords: set[str] = field(default_factory=lambda: {PASSWORD})
    payment_passwords: set[str] = field(default_factory=set)
    id_numbers: set[str] = field(default_factory=set)
    card_keys: set[str] = field(default_factory=set)


@dataclass
class World:
    platform: Platform
    people: dict[str, Person]
    tokens: dict[str, str | None]
    secrets: Secrets
    ids: dict[str, str]
    card_keys: dict[str, list[str]]  # offer id -> the keys imported into it
    payment_passwords: dict[str, str]
    _clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)

    def new_card_key(self) -> str:
        """A key about to be typed into Kami: the scanner will look for it."""
        key = f"SEC-{uuid4().hex.upper()}"
        self.secrets.card_keys.add(key)
        return key

    def headers(self, principal: str) -> dict[str, str]:
        token = self.tokens[principal]
        return {"Authorization": f"Bearer {token}"} if token else {}

    def client(self, service: str) -> httpx.AsyncClient:
        """One keep-alive connection pool per service for the whole session."""
        if service not in self._clients:
            self._clients[service] = httpx.AsyncClient(
                base_url=self.platform.url(service), timeout=30
            )
        return self._clients[service]

    async def call(
        self, principal: str, service: str, method: str, path: str, **kwargs: Any
    ) -> httpx.Response:
        headers = {**self.headers(principal), **kwargs.pop("headers", {})}
        return await self.client(service).request(method, path, headers=headers, **kwargs)

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()

    def user_token(
        self, user_id: str, *roles: Role, ttl: timedelta, now_offset: timedelta = timedelta(0)
    ) -> str:
        """A token signed with identity's real key (as only identity can)."""
        from kami_events.clock import utc_now

        return issue_user_token(
            self.platform.secrets()["KAMI_IDENTITY_SIGNING_KEY"],
            user_id,
            set(roles) or {Role.BUYER},
            tier="phone",
            now=utc_now() + now_offset,
            ttl=ttl,
        )


def new_payment_password() -> str:
    # Not 135790 (the demo's): a value the scanner can tell apart from ids.
    return f"{secrets.randbelow(900000) + 100000}"


async def set_payment_password(person: Person, world_secrets: Secrets) -> str:
    password = new_payment_password()
    response = await person.call(
        "payment", "PUT", "/wallet/payment-password", json={"new_password": password}
    )
    assert response.status_code == 204, response.text
    world_secrets.payment_passwords.add(password)
    return password


async def real_name(person: Person, world_secrets: Secrets) -> str:
    id_number = resident_id()
    response = await person.call(
        "identity", "POST", "/me/real-name", json={"legal_name": "王五", "id_number": id_number}
    )
    assert response.status_code == 200, response.text
    world_secrets.id_numbers.add(id_number)
    await person.refresh()
    return id_number


async def fund_wallet(person: Person, amount: int) -> str:
    """A wallet top-up paid at the simulated channel; returns its id."""
    top_up = await person.call(
        "payment", "POST", "/wallet/top-ups", json={"amount": amount, "channel": "alipay"}
    )
    assert top_up.status_code == 201, top_up.text
    paid = await person.call("payment", "POST", top_up.json()["pay"]["simulator_pay"])
    assert paid.status_code == 200, paid.text
    await until(
        lambda: person.call("payment", "GET", "/wallet"),
        lambda r: r.status_code == 200 and r.json()["balance"] >= amount,
        what="the top-up to reach the wallet",
    )
    return str(top_up.json()["top_up_id"])


async def approved(platform: Platform, operator: Person, world_secrets: Secrets) -> Person:
    seller = await sign_up(platform)
    await real_name(seller, world_secrets)
    response = await operator.call(
        "identity",
        "POST",
        f"/users/{seller.user_id}/seller-approval",
        json={"shop_name": f"安全测试{uuid4().hex[:4]}"},
    )
    assert response.status_code == 200, response.text
    await seller.refresh()
    return seller


async def place(person: Person, offer_id: str, **body: Any) -> str:
    placed = await until(
        lambda: person.call(
            "ordering",
            "POST",
            "/orders",
            json={"offer_id": offer_id, "quantity": 1, **body},
            headers={"Idempotency-Key": str(uuid4())},
        ),
        lambda r: r.status_code != 404,
        what="ordering to learn the offer",
    )
    assert placed.status_code == 201, placed.text
    return str(placed.json()["order_id"])


def not_yet_known(response: httpx.Response) -> bool:
    """Payment learns of an order by events: until then it is not found, or
    not reserved yet; a client retries (as the refusal says)."""
    return response.status_code in (404, 409) and response.json()["error"]["code"] in (
        "order_not_found",
        "order_not_reserved",
    )


async def pay(person: Person, order_id: str, payment_password: str) -> None:
    paid = await until(
        lambda: person.call(
            "payment",
            "POST",
            "/payments",
            json={"order_id": order_id, "channel": "wallet", "payment_password": payment_password},
        ),
        lambda r: not not_yet_known(r),
        what="payment to learn the order is payable",
    )
    assert paid.status_code in (200, 201), paid.text


async def known_to_aftersales(buyer: Person, order_id: str, stage: str) -> None:
    """Aftersales learns of orders by events: wait until it has this one at `stage`."""
    await until(
        lambda: buyer.call("aftersales", "GET", f"/orders/{order_id}/guarantee"),
        lambda r: r.status_code == 200 and r.json()["stage"] == stage,
        what=f"after-sales to see order {order_id} {stage}",
    )


async def open_ticket(buyer: Person, order_id: str, category: str, description: str) -> str:
    response = await buyer.call(
        "aftersales",
        "POST",
        "/tickets",
        json={
            "order_id": order_id,
            "category": category,
            "description": description,
            "evidence_urls": ["https://img.example.com/security/screenshot.png"],
        },
        headers={"Idempotency-Key": str(uuid4())},
    )
    assert response.status_code == 201, response.text
    assert response.json()["state"] == "escalated", response.text  # waits for an agent
    return str(response.json()["ticket_id"])


async def build_world(platform: Platform, operator: Person) -> World:
    world_secrets = Secrets()
    support = await _support(platform)
    buyer = await sign_up(platform)
    other_buyer = await sign_up(platform)
    await real_name(buyer, world_secrets)
    ids: dict[str, str] = {}
    ids["buyer_top_up"] = await fund_wallet(buyer, 100_000)
    await fund_wallet(other_buyer, 10_000)
    buyer_password = await set_payment_password(buyer, world_secrets)
    other_password = await set_payment_password(other_buyer, world_secrets)

    seller = await approved(platform, operator, world_secrets)
    other_seller = await approved(platform, operator, world_secrets)
    deposit = await until(
        lambda: seller.call(
            "payment", "POST", "/deposits/top-ups", json={"amount": 50_000, "channel": "alipay"}
        ),
        lambda r: r.status_code != 403,
        what="payment to know the seller",
    )
    assert deposit.status_code == 201, deposit.text
    ids["seller_top_up"] = deposit.json()["top_up_id"]

    offer = await list_offer_with_keys(platform, operator, keys=8, seller=seller)
    other_offer = await list_offer_with_keys(platform, operator, keys=2, seller=other_seller)
    world_secrets.card_keys |= {*offer.keys, *other_offer.keys}
    ids |= {
        "offer": offer.offer_id,
        "product": offer.product_id,
        "other_offer": other_offer.offer_id,
    }
    keys_page = await seller.call("inventory", "GET", f"/offers/{offer.offer_id}/keys")
    ids["pool_key"] = keys_page.json()["keys"][0]["key_id"]
    extra_key = f"SEC-{uuid4().hex.upper()}"
    world_secrets.card_keys.add(extra_key)
    imported = await seller.call(
        "inventory",
        "POST",
        f"/offers/{offer.offer_id}/imports",
        json={"format": "txt", "content": extra_key},
        headers={"Idempotency-Key": "security-import-1"},
    )
    assert imported.status_code == 201, imported.text
    ids["import"] = "security-import-1"
    page = await seller.call("catalog", "GET", f"/products/{offer.product_id}")
    ids["category"] = page.json()["category_id"]
    # Spare products and offers for the matrix to list, withdraw and delist.
    ids["spare_product"] = await publish_product(operator)
    for name, owner in (("withdrawn_offer", other_seller), ("delisted_offer", seller)):
        listed_spare = await owner.call(
            "catalog",
            "POST",
            "/offers",
            json={
                "product_id": await publish_product(operator),
                "unit_price": 800,
                "delivery_mode": "auto",
                "max_quantity_per_order": 1,
            },
        )
        assert listed_spare.status_code == 201, listed_spare.text
        ids[name] = listed_spare.json()["offer_id"]

    # A purchase carried to the vault, and two orders left awaiting payment.
    ids["delivered_order"] = await place(buyer, offer.offer_id)
    await order_state(buyer, ids["delivered_order"], "RESERVED")
    await pay(buyer, ids["delivered_order"], buyer_password)
    delivered = await order_state(buyer, ids["delivered_order"], "DELIVERED")
    ids["payment"] = str(delivered["payment_id"])
    vault = await buyer.call(
        "delivery", "GET", "/vault", params={"order_id": delivered["order_id"]}
    )
    ids["vault_key"] = vault.json()["keys"][0]["key_id"]
    revealed = await buyer.call("delivery", "POST", f"/vault/{ids['vault_key']}/reveal")
    assert revealed.json()["secret"] in offer.keys
    ids["vault_secret"] = revealed.json()["secret"]  # typed back into a ticket below
    messages = await until(
        lambda: buyer.call("delivery", "GET", "/messages"),
        lambda r: r.status_code == 200 and bool(r.json()["messages"]),
        what="the delivery message",
    )
    ids["message"] = messages.json()["messages"][0]["message_id"]
    ids["claimed_order"] = await place(buyer, offer.offer_id)
    await order_state(buyer, ids["claimed_order"], "RESERVED")
    await pay(buyer, ids["claimed_order"], buyer_password)
    await order_state(buyer, ids["claimed_order"], "DELIVERED")
    claimed = await buyer.call(
        "delivery", "GET", "/vault", params={"order_id": ids["claimed_order"]}
    )
    ids["claimed_key"] = claimed.json()["keys"][0]["key_id"]
    for name in ("reserved_order", "cancellable_order"):
        ids[name] = await place(buyer, offer.offer_id)
        await order_state(buyer, ids[name], "RESERVED")

    # A manual offer's paid order, waiting for the seller to deliver by hand.
    manual_product = await publish_product(
        operator, name="手工充值 测试", kind="membership", delivery_mode="manual"
    )
    listed = await seller.call(
        "catalog",
        "POST",
        "/offers",
        json={
            "product_id": manual_product,
            "unit_price": 500,
            "delivery_mode": "manual",
            "manual_delivery_sla_minutes": 60,
            "max_quantity_per_order": 1,
        },
    )
    assert listed.status_code == 201, listed.text
    ids["manual_order"] = await place(buyer, listed.json()["offer_id"])
    await order_state(buyer, ids["manual_order"], "RESERVED")
    await pay(buyer, ids["manual_order"], buyer_password)
    pending = await until(
        lambda: seller.call("delivery", "GET", "/seller/deliveries"),
        lambda r: any(d["order_id"] == ids["manual_order"] for d in r.json()["deliveries"]),
        what="the manual delivery to reach the seller",
    )
    [task] = [d for d in pending.json()["deliveries"] if d["order_id"] == ids["manual_order"]]
    ids["manual_delivery"] = task["delivery_id"]

    # Two tickets of the buyer's waiting for an agent (an order has one open
    # ticket at a time; the matrix resolves both), and the manual order
    # known to after-sales as paid, with no ticket yet (the matrix opens one).
    await known_to_aftersales(buyer, ids["delivered_order"], "delivered")
    await known_to_aftersales(buyer, ids["claimed_order"], "delivered")
    await known_to_aftersales(buyer, ids["manual_order"], "paid")
    # The buyer pastes the key into the complaint, as buyers do: after-sales
    # must store it as the key's id (the leak scan looks for the key).
    ids["ticket"] = await open_ticket(
        buyer, ids["delivered_order"], "other", f"充值页面打不开，卡密 {ids['vault_secret']} 无效"
    )
    ids["second_ticket"] = await open_ticket(
        buyer, ids["claimed_order"], "wrong_product", "买的是月卡，发来的是周卡"
    )

    ids |= {
        f"{name}_id": person.user_id
        for name, person in (("buyer", buyer), ("other_buyer", other_buyer), ("seller", seller))
    }
    # The other buyer is an approved reseller with one credential (the matrix
    # issues and revokes more: only operators may).
    reseller = await until(
        lambda: operator.call(
            "reseller", "POST", "/resellers", json={"user_id": other_buyer.user_id}
        ),
        lambda response: response.status_code != 404,
        what="the reseller service to know the other buyer (UserRegistered)",
    )
    assert reseller.status_code == 201, reseller.text
    ids["reseller"] = reseller.json()["reseller_id"]
    issued = await operator.call("reseller", "POST", f"/resellers/{ids['reseller']}/credentials")
    assert issued.status_code == 201, issued.text
    ids["reseller_key"] = issued.json()["key_id"]
    service_secret = platform.secrets()["KAMI_SERVICE_TOKEN_SECRET"]
    people = {
        BUYER: buyer,
        OTHER_BUYER: other_buyer,
        SELLER: seller,
        OTHER_SELLER: other_seller,
        SUPPORT: support,
        OPERATOR: operator,
    }
    tokens: dict[str, str | None] = {name: p.access_token for name, p in people.items()}
    tokens |= {
        ANONYMOUS: None,
        SERVICE: issue_service_token(service_secret, "delivery", ttl=timedelta(hours=1)),
        OTHER_SERVICE: issue_service_token(service_secret, "ordering", ttl=timedelta(hours=1)),
        AFTERSALES_SERVICE: issue_service_token(
            service_secret, "aftersales", ttl=timedelta(hours=1)
        ),
    }
    return World(
        platform,
        people,
        tokens,
        world_secrets,
        ids,
        {offer.offer_id: offer.keys, other_offer.offer_id: other_offer.keys},
        {BUYER: buyer_password, OTHER_BUYER: other_password},
    )


async def _support(platform: Platform) -> Person:
    async with httpx.AsyncClient(base_url=platform.url("identity"), timeout=30) as identity:
        login = await identity.post(
            "/auth/login", json={"phone": SUPPORT_PHONE, "password": PASSWORD}
        )
    if login.status_code == 200:
        person = Person(platform, SUPPORT_PHONE)
        person._take_tokens(login.json())
        return person
    return await sign_up(platform, SUPPORT_PHONE)
