"""Schemathesis against every service's published OpenAPI: generated valid
and invalid requests, sent with a real token of a role the authorization
matrix admits to each route, never get a 5xx, and every answer has a
documented status, content type and schema; invalid input is refused with
a 4xx.

Bounded and repeatable: `KAMI_FUZZ_EXAMPLES` examples per operation and
mode (default 10), derandomized (a fixed seed per operation), no shrinking.
The fuzzing accounts are fresh ones, so whatever the generated requests do
to them (a locked wallet, a changed password) touches no other test.
"""

from __future__ import annotations

import os
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
from tests.security.matrix import MATRIX
from tests.security.world import (
    ANONYMOUS,
    BUYER,
    OPERATOR,
    SELLER,
    SERVICE,
    SUPPORT,
    World,
    approved,
)

# One line per service: aftersales joins when it serves HTTP.
SERVICES = ["identity", "catalog", "inventory", "ordering", "payment", "delivery"]

EXAMPLES = int(os.environ.get("KAMI_FUZZ_EXAMPLES", "10"))

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
ACTING_ORDER = (BUYER, SELLER, OPERATOR, SUPPORT, SERVICE, ANONYMOUS)


def acting_principal(service: str, method: str, route: str) -> str:
    entry = next((e for e in MATRIX if e.key == (service, method, route)), None)
    if entry is None:  # test_authorization fails for it; fuzz it signed out meanwhile
        return ANONYMOUS
    admitted = [p for p in ACTING_ORDER if 200 <= entry.expect.get(p, 0) < 300]
    return admitted[0] if admitted else ANONYMOUS


@pytest.fixture(scope="module")
async def fuzzers(world: World) -> dict[str, str | None]:
    """Tokens of fresh accounts for the fuzzer (staff and the service
    credential are the world's own: nothing they may do is harmful)."""
    buyer: Person = await sign_up(world.platform)
    seller = await approved(world.platform, world.people[OPERATOR], world.secrets)
    return {
        BUYER: buyer.access_token,
        SELLER: seller.access_token,
        OPERATOR: world.tokens[OPERATOR],
        SUPPORT: world.tokens[SUPPORT],
        SERVICE: world.tokens[SERVICE],
        ANONYMOUS: None,
    }


def fuzz(
    operation: Any, mode: GenerationMode, base_url: str, headers: dict[str, str]
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
        case = data.draw(operation.as_strategy(generation_mode=mode))
        case.call_and_validate(base_url=base_url, session=session, headers=headers, checks=CHECKS)

    try:
        examples()
    except Unsatisfiable:
        return None  # nothing to send in this mode (no parameters to make invalid)
    except (Exception, BaseExceptionGroup) as failure:  # failed checks, or no answer
        return f"{operation.label} ({mode.value}): {failure}"
    finally:
        session.close()
    return None


@pytest.mark.parametrize("service", SERVICES)
def test_every_answer_is_documented_and_none_is_a_5xx(
    service: str, world: World, fuzzers: dict[str, str | None]
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
        token = fuzzers[principal]
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failure = fuzz(operation, mode, base_url, headers)
            if failure:
                failures.append(failure)
    assert operations > 0
    assert not failures, f"{len(failures)} operations of {service} failed:\n\n" + "\n\n".join(
        failures
    )
