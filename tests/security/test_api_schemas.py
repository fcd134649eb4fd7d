"""Schemathesis against every service's published OpenAPI: generated valid
and invalid requests, sent with a real token of a role the authorization
matrix admits to each route, never get a 5xx, and every answer has a
documented status, content type and schema; invalid input is refused with
a 4xx.

Bounded and repeatable: `KAMI_FUZZ_EXAMPLES` examples per operation and
mode (default 6), derandomized (a fixed seed per operation), no shrinking.
The fuzzing accounts are fresh ones, so whatever the generated requests do
to them (a locked wallet, a changed password) touches no other test; they
own an offer, a purchase, its key and a ticket about it, and every
operation whose path names those is fuzzed on them too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from kami_actors import Person, sign_up
from kami_market import list_offer_with_keys, order_state, until
from tests.security.matrix import MATRIX
from tests.security.world import (
    AFTERSALES_SERVICE,
    ANONYMOUS,
    BUYER,
    OPERATOR,
    SELLER,
    SERVICE,
    SUPPORT,
    World,
    approved,
    fund_wallet,
    known_to_aftersales,
    open_ticket,
    pay,
    place,
    set_payment_password,
)

SERVICES = ["identity", "catalog", "inventory", "ordering", "payment", "delivery", "aftersales"]

EXAMPLES = int(os.environ.get("KAMI_FUZZ_EXAMPLES", "6"))

# Unknown query parameters are ignored, not refused, so schemathesis's
# negative_data_rejection is not among them: invalid input is checked by
# the schema of its 4xx answer (documented, Kami's error body).
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

# Who acts on a route: the first of these the matrix admits (2xx) to it.
ACTING_ORDER = (BUYER, SELLER, OPERATOR, SUPPORT, SERVICE, AFTERSALES_SERVICE, ANONYMOUS)


def acting_principal(service: str, method: str, route: str) -> str:
    entry = next((e for e in MATRIX if e.key == (service, method, route)), None)
    if entry is None:  # test_authorization fails for it; fuzz it signed out meanwhile
        return ANONYMOUS
    admitted = [p for p in ACTING_ORDER if 200 <= entry.expect.get(p, 0) < 300]
    return admitted[0] if admitted else ANONYMOUS


@dataclass
class Fuzzers:
    """Fresh accounts for the fuzzer, so whatever the generated requests do
    to them touches no other test (staff and the service credential are the
    world's own: nothing they may do harms it), and things they own, so
    generated requests also reach past "not found"."""

    tokens: dict[str, str | None]
    owned: dict[str, str]  # path parameter -> an id the acting principal owns

    def path_parameters(self, operation: Any) -> dict[str, str] | None:
        """The owned ids for all of `operation`'s path parameters, if known."""
        names = [p.name for p in operation.path_parameters]
        if not names or not all(name in self.owned for name in names):
            return None
        return {name: self.owned[name] for name in names}


@pytest.fixture(scope="module")
async def fuzzers(world: World) -> Fuzzers:
    operator = world.people[OPERATOR]
    buyer: Person = await sign_up(world.platform)
    await fund_wallet(buyer, 10_000)
    password = await set_payment_password(buyer, world.secrets)
    seller = await approved(world.platform, operator, world.secrets)
    offer = await list_offer_with_keys(world.platform, operator, keys=3, seller=seller)
    world.secrets.card_keys |= set(offer.keys)
    order_id = await place(buyer, offer.offer_id)
    await order_state(buyer, order_id, "RESERVED")
    await pay(buyer, order_id, password)
    delivered = await order_state(buyer, order_id, "DELIVERED")
    vault = await buyer.call("delivery", "GET", "/vault", params={"order_id": order_id})
    messages = await until(
        lambda: buyer.call("delivery", "GET", "/messages"),
        lambda r: r.status_code == 200 and bool(r.json()["messages"]),
        what="the delivery message",
    )
    product = await buyer.call("catalog", "GET", f"/products/{offer.product_id}")
    await known_to_aftersales(buyer, order_id, "delivered")
    ticket_id = await open_ticket(buyer, order_id, "other", "模糊测试")
    return Fuzzers(
        tokens={
            BUYER: buyer.access_token,
            SELLER: seller.access_token,
            OPERATOR: world.tokens[OPERATOR],
            SUPPORT: world.tokens[SUPPORT],
            SERVICE: world.tokens[SERVICE],
            AFTERSALES_SERVICE: world.tokens[AFTERSALES_SERVICE],
            ANONYMOUS: None,
        },
        owned={
            "slug": product.json()["category_id"],
            "product_id": offer.product_id,
            "offer_id": offer.offer_id,
            "seller_id": seller.user_id,
            "order_id": order_id,
            "payment_id": str(delivered["payment_id"]),
            "key_id": vault.json()["keys"][0]["key_id"],
            "message_id": messages.json()["messages"][0]["message_id"],
            "ticket_id": ticket_id,
        },
    )


def fuzz(
    operation: Any,
    mode: GenerationMode,
    base_url: str,
    headers: dict[str, str],
    path_parameters: dict[str, str] | None = None,
) -> str | None:
    """Run one operation's examples; the first failure's report, or None."""
    session = requests.Session()

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def examples(data: st.DataObject) -> None:
        case = data.draw(
            operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)
        )
        case.call_and_validate(base_url=base_url, session=session, headers=headers, checks=CHECKS)

    try:
        examples()
    except Unsatisfiable:
        return None  # nothing to send in this mode (no parameters to make invalid)
    except (Exception, BaseExceptionGroup) as failure:  # failed checks, or no answer
        owned = " on owned ids" if path_parameters else ""
        return f"{operation.label} ({mode.value}{owned}): {failure}"
    finally:
        session.close()
    return None


@pytest.mark.parametrize("service", SERVICES)
def test_every_answer_is_documented_and_none_is_a_5xx(
    service: str, world: World, fuzzers: Fuzzers
) -> None:
    base_url = world.platform.url(service)
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            failures.append(f"the published schema is invalid: {result.err()}")
            continue
        operation = result.ok()
        operations += 1
        principal = acting_principal(service, operation.method.upper(), operation.path)
        token = fuzzers.tokens[principal]
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        runs: list[tuple[GenerationMode, dict[str, str] | None]] = [
            (GenerationMode.POSITIVE, None),
            (GenerationMode.NEGATIVE, None),
        ]
        if owned := fuzzers.path_parameters(operation):
            # Generated bodies and queries on things that exist (and are the
            # acting principal's, where that matters).
            runs += [(GenerationMode.POSITIVE, owned), (GenerationMode.NEGATIVE, owned)]
        for mode, path_parameters in runs:
            failure = fuzz(operation, mode, base_url, headers, path_parameters)
            if failure:
                failures.append(failure)
    assert operations > 0
    assert not failures, f"{len(failures)} operations of {service} failed:\n\n" + "\n\n".join(
        failures
    )
