"""Test data and the steps most tests start from."""

from __future__ import annotations

from kami_identity import handlers
from tests.unit.identity.fakes import Harness

PASSWORD = "Correct-horse-42"
CLIENT_IP = "203.0.113.7"

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def resident_id(birth: str = "19900307", *, region: str = "110101", sequence: str = "123") -> str:
    """A resident ID number with a correct check character (GB 11643), computed
    here independently of the code under test."""
    body = region + birth + sequence
    remainder = sum(int(d) * w for d, w in zip(body, _WEIGHTS, strict=True)) % 11
    return body + "10X98765432"[remainder]


# The standard's own worked example, to keep `resident_id` honest.
assert resident_id("19491231", region="110105", sequence="002") == "11010519491231002X"


async def registered(h: Harness, phone: str, password: str = PASSWORD) -> str:
    """Request a code, verify it and register: the new user's id."""
    await handlers.request_code(h.deps, phone, CLIENT_IP)
    proof = await handlers.verify_phone(h.deps, phone, h.sms.last_code(phone))
    user = await handlers.register(h.deps, proof.token, password, CLIENT_IP)
    return user.id


async def logged_in(h: Harness, phone: str) -> handlers.TokenPair:
    await registered(h, phone)
    return await handlers.log_in(h.deps, phone, PASSWORD, CLIENT_IP)
