"""Who may do what: every endpoint of every service × every principal, with
the status each must get (DESIGN §6). The route table of the running
services is checked against this table both ways, so a new endpoint without
an entry here fails the suite, and so does an entry whose route is gone.

Principals (world.py): anonymous; the buyer and another buyer; the seller and
another seller (every approved seller is also a buyer); support; the operator
(also a buyer); delivery's service credential, another service's, and
aftersales'. Owned things (orders, payments, keys, pools, imports,
deliveries, messages, top-ups, tickets) belong to `buyer` or `seller`, so
the "other" principals are the non-owners.

Another user's order, key, delivery, message or ticket is a 404, not a 403:
its existence is not disclosed. A pool (offer) is public knowledge (the
catalog lists it), so another seller's pool is a 403.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

from tests.security.world import (
    AFTERSALES_SERVICE,
    ANONYMOUS,
    BUYER,
    OPERATOR,
    OTHER_BUYER,
    OTHER_SELLER,
    OTHER_SERVICE,
    PRINCIPALS,
    SELLER,
    SERVICE,
    SUPPORT,
    World,
)

USERS = (BUYER, OTHER_BUYER, SELLER, OTHER_SELLER, SUPPORT, OPERATOR)
NOT_USERS = (ANONYMOUS, SERVICE, OTHER_SERVICE, AFTERSALES_SERVICE)


def public(status: int = 200) -> dict[str, int]:
    """Anyone, signed in or not, gets `status`."""
    return dict.fromkeys(PRINCIPALS, status)


def users(status: int, **per_principal: int) -> dict[str, int]:
    """A user token is required (401 without one, or with a service's); every
    user gets `status` unless named otherwise."""
    return dict.fromkeys(NOT_USERS, 401) | dict.fromkeys(USERS, status) | per_principal


def sellers(status: int, **per_principal: int) -> dict[str, int]:
    """Role `seller` required: the two sellers get `status`, other users 403."""
    return users(403, seller=status, other_seller=status) | per_principal


def operators(status: int) -> dict[str, int]:
    return users(403, operator=status)


def services(status: int, **per_principal: int) -> dict[str, int]:
    """A service credential required: user tokens are 401 too."""
    return (
        public(401)
        | dict.fromkeys((SERVICE, OTHER_SERVICE, AFTERSALES_SERVICE), status)
        | per_principal
    )


Request = Callable[[World], dict[str, Any]]
PathParameters = Callable[[World], Mapping[str, str]]


def nothing(world: World) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Entry:
    service: str
    method: str
    route: str  # the path template exactly as in the service's OpenAPI
    expect: Mapping[str, int]
    path: PathParameters = lambda world: {}
    request: Request = nothing
    # A principal's own target where one thing cannot take every success
    # (a ticket is resolved once: each agent resolves its own).
    path_for: Mapping[str, PathParameters] = field(default_factory=dict)
    # Strings only `visible_to` may see in a response (another's ids, secrets).
    private: Callable[[World], list[str]] = lambda world: []
    visible_to: frozenset[str] = field(default_factory=frozenset)

    def path_of(self, principal: str, world: World) -> str:
        return self.route.format(**self.path_for.get(principal, self.path)(world))

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.service, self.method, self.route)

    @property
    def name(self) -> str:
        return f"{self.service} {self.method} {self.route}"


def ids(**names: str) -> Callable[[World], dict[str, str]]:
    """Path parameters taken from the world's ids by name."""
    return lambda world: {param: world.ids[name] for param, name in names.items()}


def literal(**values: str) -> Callable[[World], dict[str, str]]:
    return lambda world: values


def body(payload: Callable[[World], Any]) -> Request:
    return lambda world: {"json": payload(world)}


def fresh_phone() -> str:
    return f"136{uuid4().int % 10**8:08d}"


def _ops(service: str) -> list[Entry]:
    return [
        Entry(service, "GET", "/healthz", public()),
        Entry(service, "GET", "/readyz", public()),
        Entry(service, "GET", "/metrics", public()),
        # Each service's own dead-letter topic (kami_web.dead_letters).
        Entry(service, "GET", "/dead-letters", operators(200)),
        Entry(
            service,
            "POST",
            "/dead-letters/redrive",
            operators(404),
            request=body(lambda w: {"ids": ["0:999999999"]}),
        ),
    ]


def _product(world: World, category: str) -> dict[str, Any]:
    return {
        "name": "安全 矩阵 产品",
        "category_id": category,
        "kind": "game_points",
        "delivery_mode": "auto",
        "face_value": 100,
    }


IDENTITY = [
    *_ops("identity"),
    Entry(
        "identity",
        "POST",
        "/auth/otp",
        public(202),
        request=lambda w: {"json": {"phone": fresh_phone()}},
    ),
    # No code was sent to this phone: refused alike whoever asks.
    Entry(
        "identity",
        "POST",
        "/auth/otp/verify",
        public(400),
        request=lambda w: {"json": {"phone": fresh_phone(), "code": "123456"}},
    ),
    Entry(
        "identity",
        "POST",
        "/users",
        public(401),
        request=body(lambda w: {"verification_token": "forged", "password": "Pa55word-x"}),
    ),
    Entry(
        "identity",
        "POST",
        "/auth/login",
        public(401),
        request=body(lambda w: {"phone": w.people[BUYER].phone, "password": "wrong-1234"}),
    ),
    Entry(
        "identity",
        "POST",
        "/auth/refresh",
        public(401),
        request=body(lambda w: {"refresh_token": "forged"}),
    ),
    Entry(
        "identity",
        "POST",
        "/auth/logout",
        public(401),
        request=body(lambda w: {"refresh_token": "forged"}),
    ),
    Entry("identity", "GET", "/tiers", public()),
    Entry("identity", "GET", "/me", users(200)),
    # A checksum-invalid ID number: users get as far as validation, no further.
    Entry(
        "identity",
        "POST",
        "/me/real-name",
        users(422),
        request=body(lambda w: {"legal_name": "赵六", "id_number": "110101199001011230"}),
    ),
    Entry(
        "identity",
        "POST",
        "/me/advanced-verification",
        users(422),
        request=body(lambda w: {"liveness_token": "short"}),
    ),
    Entry("identity", "GET", "/me/advanced-verification", users(404)),
    # An empty shop name: users get as far as validation, no application is stored.
    Entry(
        "identity",
        "POST",
        "/me/seller-application",
        users(422),
        request=body(lambda w: {"shop_name": ""}),
    ),
    Entry("identity", "GET", "/seller-applications", operators(200)),
    Entry(
        "identity",
        "POST",
        "/seller-applications/{user_id}/rejection",
        operators(404),
        path=literal(user_id="no-such-user"),
        request=body(lambda w: {"reason": "matrix"}),
    ),
    Entry("identity", "GET", "/verifications/pending", operators(200)),
    Entry("identity", "GET", "/users/suspended", operators(200)),
    Entry(
        "identity",
        "POST",
        "/users/{user_id}/seller-approval",
        operators(404),
        path=literal(user_id="no-such-user"),
        request=body(lambda w: {"shop_name": "x"}),
    ),
    Entry(
        "identity",
        "POST",
        "/users/{user_id}/suspension",
        operators(404),
        path=literal(user_id="no-such-user"),
        request=body(lambda w: {"reason": "fraud_suspected"}),
    ),
]

CATALOG = [
    *_ops("catalog"),
    Entry("catalog", "GET", "/categories", public()),
    Entry("catalog", "GET", "/categories/{slug}", public(), path=ids(slug="category")),
    Entry("catalog", "GET", "/search", public()),
    Entry("catalog", "GET", "/products/{product_id}", public(), path=ids(product_id="product")),
    Entry(
        "catalog", "GET", "/products/{product_id}/offers", public(), path=ids(product_id="product")
    ),
    Entry("catalog", "GET", "/offers/{offer_id}", public(), path=ids(offer_id="offer")),
    Entry("catalog", "GET", "/offers/{offer_id}/reviews", public(), path=ids(offer_id="offer")),
    Entry("catalog", "GET", "/sellers/{seller_id}", public(), path=ids(seller_id="seller_id")),
    Entry("catalog", "GET", "/hot-picks", public()),
    Entry(
        "catalog",
        "POST",
        "/categories",
        operators(201),
        request=lambda w: {"json": {"slug": f"sec-{uuid4().hex[:8]}", "name": "安全测试"}},
    ),
    Entry(
        "catalog",
        "PATCH",
        "/categories/{slug}",
        operators(200),
        path=ids(slug="category"),
        request=body(lambda w: {"name": "安全测试分类"}),
    ),
    Entry(
        "catalog",
        "POST",
        "/products",
        operators(201),
        request=lambda w: {"json": _product(w, w.ids["category"])},
    ),
    Entry(
        "catalog",
        "PUT",
        "/products/{product_id}",
        operators(200),
        path=literal(product_id=f"sec-product-{uuid4().hex[:8]}"),
        request=lambda w: {"json": _product(w, w.ids["category"])},
    ),
    Entry(
        "catalog",
        "POST",
        "/offers",
        sellers(201),
        request=body(
            lambda w: {
                "product_id": w.ids["spare_product"],
                "unit_price": 700,
                "delivery_mode": "auto",
                "max_quantity_per_order": 2,
            }
        ),
    ),
    Entry(
        "catalog",
        "PUT",
        "/offers/{offer_id}/price",
        sellers(200, other_seller=403),
        path=ids(offer_id="offer"),
        request=body(lambda w: {"unit_price": 950}),
    ),
    Entry(
        "catalog",
        "POST",
        "/offers/{offer_id}/withdraw",
        sellers(403, other_seller=200),
        path=ids(offer_id="withdrawn_offer"),
    ),
    Entry(
        "catalog",
        "POST",
        "/offers/{offer_id}/operator-delist",
        operators(200),
        path=ids(offer_id="delisted_offer"),
        request=body(lambda w: {"detail": "matrix"}),
    ),
    Entry(
        "catalog",
        "GET",
        "/sellers/me/offers",
        sellers(200),
        private=lambda w: [w.ids["offer"]],
        visible_to=frozenset({SELLER}),
    ),
    # Only a buyer with a completed order of the offer may review it (after
    # the arrival entry below completed the buyer's order).
    Entry(
        "catalog",
        "POST",
        "/offers/{offer_id}/reviews",
        users(403, buyer=201),
        path=ids(offer_id="offer"),
        request=body(lambda w: {"rating": 5}),
    ),
]

INVENTORY = [
    *_ops("inventory"),
    Entry(
        "inventory",
        "GET",
        "/offers",
        sellers(200),
        private=lambda w: [w.ids["offer"]],
        visible_to=frozenset({SELLER}),
    ),
    Entry(
        "inventory",
        "POST",
        "/offers/{offer_id}/imports",
        sellers(201, other_seller=403),
        path=ids(offer_id="offer"),
        request=lambda w: {
            "json": {"format": "txt", "content": w.new_card_key()},
            "headers": {"Idempotency-Key": f"matrix-{uuid4().hex}"},
        },
    ),
    Entry(
        "inventory",
        "GET",
        "/offers/{offer_id}/imports/{import_id}",
        sellers(200, other_seller=403),
        path=ids(offer_id="offer", import_id="import"),
    ),
    Entry(
        "inventory",
        "GET",
        "/offers/{offer_id}/stock",
        sellers(200, other_seller=403),
        path=ids(offer_id="offer"),
    ),
    Entry(
        "inventory",
        "GET",
        "/offers/{offer_id}/keys",
        sellers(200, other_seller=403),
        path=ids(offer_id="offer"),
    ),
    Entry(
        "inventory",
        "POST",
        "/offers/{offer_id}/keys/void",
        sellers(200, other_seller=403),
        path=ids(offer_id="offer"),
        request=body(lambda w: {"key_ids": [w.ids["vault_key"]]}),
    ),
    Entry(
        "inventory",
        "POST",
        "/internal/orders/{order_id}/keys/reveal",
        services(200, other_service=403, aftersales_service=403),
        path=ids(order_id="delivered_order"),
        request=body(lambda w: {"key_ids": [w.ids["vault_key"]]}),
    ),
]

ORDERING = [
    *_ops("ordering"),
    # Commerce (issue 15): an empty body shows who is let in (422 past the
    # role check) and changes nothing.
    Entry(
        "ordering",
        "PUT",
        "/offers/{offer_id}/price-tiers",
        sellers(422),
        path=ids(offer_id="offer"),
        request=body(lambda w: {}),
    ),
    Entry(
        "ordering",
        "POST",
        "/offers/{offer_id}/flash-sales",
        sellers(422),
        path=ids(offer_id="offer"),
        request=body(lambda w: {}),
    ),
    Entry(
        "ordering",
        "GET",
        "/offers/{offer_id}/pricing",
        public(200),
        path=ids(offer_id="offer"),
    ),
    Entry(
        "ordering",
        "POST",
        "/coupons",
        users(403, seller=422, other_seller=422, operator=422),
        request=body(lambda w: {}),
    ),
    Entry(
        "ordering",
        "GET",
        "/coupons/{code}",
        users(403, seller=404, other_seller=404, operator=404),
        path=literal(code="NO-SUCH-COUPON"),
    ),
    Entry(
        "ordering",
        "POST",
        "/orders",
        users(404),
        request=lambda w: {
            "json": {"offer_id": "no-such-offer", "quantity": 1},
            "headers": {"Idempotency-Key": uuid4().hex},
        },
    ),
    Entry(
        "ordering",
        "GET",
        "/orders",
        users(200),
        private=lambda w: [w.ids["delivered_order"], w.ids["reserved_order"]],
        visible_to=frozenset({BUYER}),
    ),
    Entry(
        "ordering",
        "GET",
        "/orders/{order_id}",
        users(404, buyer=200, support=200, operator=200),
        path=ids(order_id="delivered_order"),
    ),
    Entry(
        "ordering",
        "GET",
        "/orders/{order_id}/timeline",
        users(404, buyer=200, support=200, operator=200),
        path=ids(order_id="delivered_order"),
    ),
    Entry(
        "ordering",
        "POST",
        "/orders/{order_id}/cancel",
        users(404, buyer=200),
        path=ids(order_id="cancellable_order"),
    ),
    Entry("ordering", "GET", "/sagas/past-deadline", operators(200)),
]

PAYMENT = [
    *_ops("payment"),
    Entry(
        "payment",
        "POST",
        "/payments",
        users(404, buyer=200),
        request=body(
            lambda w: {
                "order_id": w.ids["reserved_order"],
                "channel": "wallet",
                "payment_password": w.payment_passwords[BUYER],
            }
        ),
    ),
    Entry(
        "payment",
        "GET",
        "/payments/{payment_id}",
        users(404, buyer=200, support=200, operator=200),
        path=ids(payment_id="payment"),
    ),
    Entry(
        "payment",
        "GET",
        "/orders/{order_id}/payment",
        users(404, buyer=200, support=200, operator=200),
        path=ids(order_id="delivered_order"),
    ),
    # Five digits: no user gets past validation, so no password is set.
    Entry(
        "payment",
        "PUT",
        "/wallet/payment-password",
        users(422),
        request=body(lambda w: {"new_password": "12345"}),
    ),
    Entry("payment", "GET", "/wallet", users(200)),
    Entry("payment", "GET", "/wallet/password-free", users(200)),
    # Turning it off needs only the buyer's session (it was never on here).
    Entry(
        "payment",
        "PUT",
        "/wallet/password-free",
        users(200),
        request=body(lambda w: {"enabled": False}),
    ),
    Entry(
        "payment",
        "GET",
        "/wallet/statement",
        users(200),
        private=lambda w: [w.ids["delivered_order"]],
        visible_to=frozenset({BUYER}),
    ),
    Entry(
        "payment",
        "POST",
        "/wallet/top-ups",
        users(201),
        request=body(lambda w: {"amount": 100, "channel": "wechat_pay"}),
    ),
    Entry(
        "payment",
        "GET",
        "/top-ups/{top_up_id}",
        users(404, buyer=200),
        path=ids(top_up_id="buyer_top_up"),
    ),
    Entry(
        "payment",
        "POST",
        "/deposits/top-ups",
        sellers(201),
        request=body(lambda w: {"amount": 100, "channel": "alipay"}),
    ),
    Entry("payment", "GET", "/deposits/me", sellers(200)),
    Entry(
        "payment",
        "GET",
        "/sellers/me/statement",
        sellers(200),
        private=lambda w: [w.ids["delivered_order"], w.ids["seller_id"]],
        visible_to=frozenset({SELLER}),
    ),
    Entry("payment", "GET", "/ledger/trial-balance", operators(200)),
    # Channels authenticate by their signature, not by a token: an unsigned
    # notification is refused whoever sends it.
    Entry(
        "payment",
        "POST",
        "/callbacks/{channel}",
        public(401),
        path=literal(channel="alipay"),
        request=lambda w: {"content": b"trade_no=1"},
    ),
    Entry(
        "payment",
        "POST",
        "/callbacks/{channel}/reversal",
        public(401),
        path=literal(channel="wechat_pay"),
        request=body(lambda w: {"id": "x"}),
    ),
    # The local stand-in for the channels' own sites (never mounted in
    # production): public, like the channel's pay page.
    Entry(
        "payment",
        "GET",
        "/simulator/{channel}/trades/{gateway_trade_no}",
        public(404),
        path=literal(channel="alipay", gateway_trade_no="no-such-trade"),
    ),
    Entry(
        "payment",
        "POST",
        "/simulator/{channel}/pay/{gateway_trade_no}",
        public(409),
        path=literal(channel="alipay", gateway_trade_no="no-such-trade"),
    ),
    Entry(
        "payment",
        "POST",
        "/simulator/{channel}/notify/{gateway_trade_no}",
        public(409),
        path=literal(channel="alipay", gateway_trade_no="no-such-trade"),
    ),
    Entry(
        "payment",
        "POST",
        "/simulator/{channel}/chargeback/{gateway_trade_no}",
        public(409),
        path=literal(channel="alipay", gateway_trade_no="no-such-trade"),
        request=body(lambda w: {}),
    ),
]

DELIVERY = [
    *_ops("delivery"),
    Entry(
        "delivery",
        "GET",
        "/vault",
        users(200),
        private=lambda w: [w.ids["vault_key"]],
        visible_to=frozenset({BUYER}),
    ),
    Entry(
        "delivery",
        "POST",
        "/vault/{key_id}/reveal",
        users(404, buyer=200),
        path=ids(key_id="vault_key"),
    ),
    Entry(
        "delivery",
        "GET",
        "/vault/export",
        users(200),
        private=lambda w: [w.ids["vault_key"], *w.secrets.card_keys],
        visible_to=frozenset({BUYER}),
    ),
    Entry(
        "delivery",
        "GET",
        "/messages",
        users(200),
        private=lambda w: [w.ids["message"]],
        visible_to=frozenset({BUYER}),
    ),
    Entry(
        "delivery",
        "POST",
        "/messages/{message_id}/read",
        users(404, buyer=204),
        path=ids(message_id="message"),
    ),
    Entry(
        "delivery",
        "GET",
        "/seller/deliveries",
        sellers(200),
        private=lambda w: [w.ids["manual_delivery"]],
        visible_to=frozenset({SELLER}),
    ),
    Entry(
        "delivery",
        "POST",
        "/seller/deliveries/{delivery_id}/keys",
        sellers(201, other_seller=404),
        path=ids(delivery_id="manual_delivery"),
        request=lambda w: {"json": {"keys": [w.new_card_key()]}},
    ),
    # The keys' secrets stay in delivery: only aftersales may ask the issuer.
    Entry(
        "delivery",
        "POST",
        "/internal/orders/{order_id}/keys/verify",
        services(403, aftersales_service=200),
        path=ids(order_id="claimed_order"),
        request=body(lambda w: {"key_ids": [w.ids["claimed_key"]]}),
    ),
    # Only the reseller service fetches an order's plaintext keys (for a reseller).
    Entry(
        "delivery",
        "POST",
        "/internal/orders/{order_id}/keys/reveal",
        services(403),
        path=ids(order_id="delivered_order"),
        request=body(lambda w: {"owner_id": w.ids["buyer_id"]}),
        private=lambda w: [w.ids["vault_secret"]],
    ),
    # Only aftersales has a ticket's free text cleared of the order's keys.
    Entry(
        "delivery",
        "POST",
        "/internal/orders/{order_id}/keys/redact",
        services(403, aftersales_service=200),
        path=ids(order_id="delivered_order"),
        request=body(lambda w: {"texts": [f"卡密 {w.ids['vault_secret']} 不能用"]}),
        private=lambda w: [w.ids["vault_secret"]],
    ),
    # Completes the buyer's order (the review entry of the catalog needs it).
    Entry(
        "delivery",
        "POST",
        "/orders/{order_id}/arrival",
        users(404, buyer=200),
        path=ids(order_id="delivered_order"),
    ),
]

AFTERSALES = [
    *_ops("aftersales"),
    # The buyer's paid order with no ticket yet: only the buyer may claim it.
    Entry(
        "aftersales",
        "POST",
        "/tickets",
        users(404, buyer=201),
        request=body(
            lambda w: {
                "order_id": w.ids["manual_order"],
                "category": "wrong_amount",
                "description": "充值金额不对",
            }
        ),
    ),
    Entry(
        "aftersales",
        "GET",
        "/tickets",
        users(200),
        private=lambda w: [w.ids["ticket"], w.ids["second_ticket"]],
        visible_to=frozenset({BUYER}),
    ),
    Entry(
        "aftersales",
        "GET",
        "/tickets/{ticket_id}",
        users(404, buyer=200, support=200, operator=200),
        path=ids(ticket_id="ticket"),
        # The buyer pasted the key into the ticket: it was stored as the key's id.
        private=lambda w: [w.ids["vault_secret"]],
    ),
    Entry(
        "aftersales",
        "POST",
        "/tickets/{ticket_id}/messages",
        users(404, buyer=201, support=201, operator=201),
        path=ids(ticket_id="ticket"),
        request=body(lambda w: {"text": "请尽快处理"}),
    ),
    Entry(
        "aftersales",
        "GET",
        "/orders/{order_id}/guarantee",
        users(404, buyer=200, support=200, operator=200),
        path=ids(order_id="delivered_order"),
    ),
    Entry(
        "aftersales",
        "GET",
        "/queue",
        users(403, support=200, operator=200),
        private=lambda w: [w.ids["ticket"], w.ids["second_ticket"]],
        visible_to=frozenset({SUPPORT, OPERATOR}),
    ),
    # Agents give part of the price back; buyers and sellers resolve nothing.
    Entry(
        "aftersales",
        "POST",
        "/tickets/{ticket_id}/resolve",
        users(403, support=200, operator=200),
        path=ids(ticket_id="ticket"),
        path_for={SUPPORT: ids(ticket_id="second_ticket")},
        request=body(lambda w: {"action": "refund_partial", "amount": 100, "note": "补偿1元"}),
    ),
    Entry("aftersales", "GET", "/reports/issues", operators(200)),
    Entry("aftersales", "GET", "/reports/flagged-sellers", operators(200)),
    # Tickets about the seller's orders: the buyer's tickets are about `seller`'s offer.
    Entry(
        "aftersales",
        "GET",
        "/seller/tickets",
        sellers(200),
        private=lambda w: [w.ids["ticket"], w.ids["second_ticket"]],
        visible_to=frozenset({SELLER}),
    ),
    Entry(
        "aftersales",
        "GET",
        "/reports/sellers/{seller_id}",
        operators(200),
        path=ids(seller_id="seller_id"),
    ),
]

# The reseller API: operators approve and issue credentials; every /v1 route
# wants an HMAC signature, so no token of any kind gets past its 401 (the
# signing itself is tested in tests/unit/reseller and tests/e2e/test_reseller.py).
SIGNED_ONLY = public(401)
RESELLER = [
    *_ops("reseller"),
    Entry(
        "reseller",
        "POST",
        "/resellers",
        operators(201),
        request=body(lambda w: {"user_id": w.ids["seller_id"], "default_markup_bp": 500}),
    ),
    Entry("reseller", "GET", "/resellers", operators(200)),
    Entry(
        "reseller",
        "POST",
        "/resellers/{reseller_id}/credentials",
        operators(201),
        path=ids(reseller_id="reseller"),
    ),
    Entry(
        "reseller",
        "DELETE",
        "/resellers/{reseller_id}/credentials/{key_id}",
        operators(204),
        path=ids(reseller_id="reseller", key_id="reseller_key"),
    ),
    *(
        Entry("reseller", method, route, SIGNED_ONLY, path=literal(**params))
        for method, route, params in (
            ("GET", "/v1/me", {}),
            ("GET", "/v1/catalogue", {}),
            ("PUT", "/v1/markups/default", {}),
            ("PUT", "/v1/markups/{offer_id}", {"offer_id": "o-1"}),
            ("PUT", "/v1/webhook", {}),
            ("POST", "/v1/orders", {}),
            ("GET", "/v1/orders", {}),
            ("GET", "/v1/orders/{order_id}", {"order_id": "o-1"}),
            ("GET", "/v1/orders/{order_id}/keys", {"order_id": "o-1"}),
            ("GET", "/v1/webhooks", {}),
            ("GET", "/v1/webhooks/{webhook_id}", {"webhook_id": "w-1"}),
            ("POST", "/v1/webhooks/{webhook_id}/resend", {"webhook_id": "w-1"}),
        )
    ),
]

# Order matters where an owner's success changes what follows (an order is
# completed by arrival before it can be reviewed).
MATRIX: list[Entry] = [
    *IDENTITY,
    *INVENTORY,
    *ORDERING,
    *PAYMENT,
    *AFTERSALES,
    *DELIVERY,
    *CATALOG,
    *RESELLER,
]
