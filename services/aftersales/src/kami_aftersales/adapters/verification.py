"""Delivery's answers about an order's keys, without the keys.

What each product's issuer says about keys:

    POST {KAMI_AFTERSALES_DELIVERY_URL}/internal/orders/{order_id}/keys/verify
    Authorization: Bearer <service credential of "aftersales">
    {"key_ids": [...]}
    200 {"verdicts": [{"key_id", "verdict": "valid"|"already_used"|"invalid"|"unknown"}]}

Free text with the order's keys replaced by their ids (a buyer may paste a
key into a complaint; aftersales must not store it, DESIGN §9.5):

    POST {KAMI_AFTERSALES_DELIVERY_URL}/internal/orders/{order_id}/keys/redact
    {"texts": [...]}
    200 {"texts": [...], "redacted": n}

The secrets stay in delivery (DESIGN §6): delivery opens the buyer's vault
and asks the issuer. Anything but a well-formed 200 is `VerificationUnavailable`,
which the rules treat as "could not verify" (the ticket goes to an agent),
or `RedactionUnavailable` (nothing is stored; the client tries again).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from kami_aftersales.domain.rules import Verdict
from kami_web.auth import issue_service_token


class VerificationUnavailable(Exception):
    pass


class RedactionUnavailable(Exception):
    pass


class KeyVerification(Protocol):
    async def verify(self, order_id: str, key_ids: Sequence[str]) -> dict[str, Verdict]: ...


class KeyRedaction(Protocol):
    async def redact(self, order_id: str, texts: Sequence[str]) -> list[str]:
        """`texts` with the order's keys replaced; raises `RedactionUnavailable`."""
        ...


class _Verdict(BaseModel):
    model_config = ConfigDict(extra="ignore")

    key_id: str
    verdict: Verdict


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    verdicts: list[_Verdict]


class _Redacted(BaseModel):
    model_config = ConfigDict(extra="ignore")

    texts: list[str]


class HttpKeyVerification:
    SERVICE = "aftersales"

    def __init__(self, client: httpx.AsyncClient, *, base_url: str, service_secret: str) -> None:
        self._client = client
        self._base_url = base_url.rstrip("/")
        self._secret = service_secret

    async def verify(self, order_id: str, key_ids: Sequence[str]) -> dict[str, Verdict]:
        url = f"{self._base_url}/internal/orders/{quote(order_id, safe='')}/keys/verify"
        token = issue_service_token(self._secret, self.SERVICE)
        try:
            response = await self._client.post(
                url, json={"key_ids": list(key_ids)}, headers={"Authorization": f"Bearer {token}"}
            )
        except httpx.HTTPError as exc:
            raise VerificationUnavailable(
                f"delivery did not answer: {type(exc).__name__}"
            ) from None
        if response.status_code != 200:
            raise VerificationUnavailable(f"delivery answered {response.status_code}")
        try:
            answer = _Answer.model_validate_json(response.content)
        except ValidationError:
            raise VerificationUnavailable("delivery's answer is malformed") from None
        verdicts = {v.key_id: v.verdict for v in answer.verdicts if v.key_id in set(key_ids)}
        return {k: verdicts.get(k, Verdict.UNKNOWN) for k in key_ids}

    async def redact(self, order_id: str, texts: Sequence[str]) -> list[str]:
        url = f"{self._base_url}/internal/orders/{quote(order_id, safe='')}/keys/redact"
        token = issue_service_token(self._secret, self.SERVICE)
        try:
            response = await self._client.post(
                url, json={"texts": list(texts)}, headers={"Authorization": f"Bearer {token}"}
            )
        except httpx.HTTPError as exc:
            raise RedactionUnavailable(f"delivery did not answer: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise RedactionUnavailable(f"delivery answered {response.status_code}")
        try:
            answer = _Redacted.model_validate_json(response.content)
        except ValidationError:
            raise RedactionUnavailable("delivery's answer is malformed") from None
        if len(answer.texts) != len(texts):
            raise RedactionUnavailable("delivery answered for other texts")
        return answer.texts
