"""The authorization matrix (matrix.py) against the running services: every
endpoint × every principal gets exactly the status the matrix says, owned
things stay with their owners, and the matrix covers every route."""

from __future__ import annotations

import httpx
import pytest

from kami_local import Platform, available_services
from tests.security.matrix import MATRIX, Entry
from tests.security.world import World


def route_table(platform: Platform) -> set[tuple[str, str, str]]:
    """Every (service, method, path) the running services publish."""
    routes = set()
    for service in available_services():
        document = httpx.get(f"{platform.url(service)}/openapi.json", timeout=30).json()
        for path, operations in document["paths"].items():
            routes |= {(service, method.upper(), path) for method in operations}
    return routes


def test_every_route_has_an_entry_and_every_entry_a_route(platform: Platform) -> None:
    routes = route_table(platform)
    listed = [entry.key for entry in MATRIX]
    assert len(listed) == len(set(listed)), "an endpoint is in the matrix twice"
    missing = sorted(routes - set(listed))
    stale = sorted(set(listed) - routes)
    assert not missing, f"endpoints with no entry in tests/security/matrix.py: {missing}"
    assert not stale, f"matrix entries for routes that no longer exist: {stale}"


def _ordered(entry: Entry) -> list[tuple[str, int]]:
    # Refusals first, then successes: an owner's change must not decide
    # what a non-owner gets.
    return sorted(entry.expect.items(), key=lambda item: 200 <= item[1] < 300)


@pytest.mark.parametrize("entry", MATRIX, ids=lambda entry: entry.name)
async def test_who_may_do_what(entry: Entry, world: World) -> None:
    private = entry.private(world)
    wrong: list[str] = []
    for principal, expected in _ordered(entry):
        request = entry.request(world)
        path = entry.path_of(principal, world)
        response = await world.call(principal, entry.service, entry.method, path, **request)
        if response.status_code != expected:
            wrong.append(
                f"{principal}: {response.status_code} (expected {expected}) {response.text[:300]}"
            )
        if response.status_code >= 400 and response.status_code != 404:
            # Every refusal says why, in Kami's error body (channels' own
            # callback answers excepted: the channel reads those).
            if entry.route.startswith("/callbacks/"):
                continue
            assert response.json()["error"]["code"], response.text
        if principal not in entry.visible_to:
            leaked = [value for value in private if value in response.text]
            if leaked:
                wrong.append(f"{principal} sees another's {leaked}")
    assert not wrong, f"{entry.name}:\n" + "\n".join(wrong)
