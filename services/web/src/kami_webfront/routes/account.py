"""Accounts: register by phone code, log in and out, the profile with
real-name verification and what each tier grants, the language switch."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import Response

from kami_webfront.clients import BackendError
from kami_webfront.i18n import LANGUAGE_COOKIE, LANGUAGES
from kami_webfront.pages import Page, PageDep, is_secure
from kami_webfront.session import Session

router = APIRouter()

Phone = Annotated[str, Form(min_length=11, max_length=11, pattern=r"^1\d{10}$")]
Password = Annotated[str, Form(min_length=1, max_length=128)]


def _safe_next(next_path: str | None) -> str:
    """Only a path of this site: never `//elsewhere` or `https://...`."""
    if next_path and next_path.startswith("/") and not next_path.startswith(("//", "/\\")):
        return next_path
    return "/"


async def _log_in(page: Page, phone: str, password: str) -> None:
    tokens = await page.backends.post(
        "identity", "/auth/login", json={"phone": phone, "password": password}
    )
    page.set_session(
        page.session.logged_in_as(
            tokens["user_id"], tokens["access_token"], tokens["refresh_token"], tokens["expires_in"]
        )
    )


@router.get("/login")
async def login_form(page: PageDep, next: str | None = None) -> Response:
    return page.render("account/login.html", next=_safe_next(next), error=None, phone="")


@router.post("/login")
async def log_in(
    page: PageDep,
    phone: Phone,
    password: Password,
    next: Annotated[str, Form()] = "/",
) -> Response:
    try:
        await _log_in(page, phone, password)
    except BackendError as exc:
        if exc.status >= 500:
            raise
        return page.render(
            "account/login.html",
            status_code=400,
            next=_safe_next(next),
            phone=phone,
            error=exc.message,
        )
    return page.redirect(_safe_next(next))


@router.post("/logout")
async def log_out(page: PageDep) -> Response:
    if page.session.refresh_token:
        # The browser's session ends either way.
        with contextlib.suppress(BackendError):
            await page.backends.post(
                "identity", "/auth/logout", json={"refresh_token": page.session.refresh_token}
            )
    page.set_session(Session())
    return page.redirect("/")


@router.get("/register")
async def register_form(page: PageDep) -> Response:
    return page.render("account/register.html", step="phone", phone="", error=None)


@router.post("/register/code")
async def send_code(page: PageDep, phone: Phone) -> Response:
    try:
        sent = await page.backends.post("identity", "/auth/otp", json={"phone": phone})
    except BackendError as exc:
        if exc.status >= 500:
            raise
        return page.render(
            "account/register.html",
            status_code=400,
            step="phone",
            phone=phone,
            error=exc.message,
        )
    return page.render("account/register.html", step="code", phone=phone, error=None, sent=sent)


@router.post("/register")
async def register(
    page: PageDep,
    phone: Phone,
    code: Annotated[str, Form(pattern=r"^\d{6}$")],
    password: Password,
) -> Response:
    try:
        proof = await page.backends.post(
            "identity", "/auth/otp/verify", json={"phone": phone, "code": code}
        )
        await page.backends.post(
            "identity",
            "/users",
            json={"verification_token": proof["verification_token"], "password": password},
        )
        await _log_in(page, phone, password)
    except BackendError as exc:
        if exc.status >= 500:
            raise
        return page.render(
            "account/register.html",
            status_code=400,
            step="code",
            phone=phone,
            error=exc.message,
            sent=None,
        )
    return page.redirect("/me")


async def _profile(
    page: Page, token: str, *, status_code: int = 200, error: str | None = None
) -> Response:
    me, tiers, wallet = await asyncio.gather(
        page.backends.get("identity", "/me", token=token),
        page.backends.get("identity", "/tiers"),
        page.backends.get("payment", "/wallet", token=token),
    )
    return page.render(
        "account/me.html", status_code=status_code, me=me, tiers=tiers, wallet=wallet, error=error
    )


@router.get("/me")
async def profile(page: PageDep) -> Response:
    return await _profile(page, page.require_login())


@router.post("/me/real-name")
async def real_name(
    page: PageDep,
    legal_name: Annotated[str, Form(min_length=1, max_length=40)],
    id_number: Annotated[str, Form(min_length=1, max_length=18)],
) -> Response:
    token = page.require_login()
    try:
        await page.backends.post(
            "identity",
            "/me/real-name",
            token=token,
            json={"legal_name": legal_name, "id_number": id_number},
        )
    except BackendError as exc:
        if exc.status >= 500:
            raise
        return await _profile(page, token, status_code=400, error=exc.message)
    await _refresh_tokens(page)
    return page.redirect("/me")


async def _refresh_tokens(page: Page) -> None:
    """New tokens now: the old access token still names the old tier."""
    if page.session.refresh_token is None:
        return
    tokens = await page.backends.post(
        "identity", "/auth/refresh", json={"refresh_token": page.session.refresh_token}
    )
    page.set_session(
        page.session.refreshed(
            tokens["access_token"], tokens["refresh_token"], tokens["expires_in"]
        )
    )


@router.post("/me/payment-password")
async def set_payment_password(
    page: PageDep,
    new_password: Annotated[str, Form(pattern=r"^\d{6}$")],
    current_password: Annotated[str | None, Form(max_length=64)] = None,
) -> Response:
    token = page.require_login()
    body = {"new_password": new_password}
    if current_password:
        body["current_password"] = current_password
    try:
        await page.backends.put("payment", "/wallet/payment-password", token=token, json=body)
    except BackendError as exc:
        if exc.status >= 500:
            raise
        return await _profile(page, token, status_code=400, error=exc.message)
    return page.redirect("/me")


@router.post("/me/top-ups")
async def top_up(
    page: PageDep,
    amount: Annotated[str, Form(max_length=12)],
    channel: Annotated[str, Form(pattern=r"^(alipay|wechat_pay)$")],
    request_id: Annotated[str, Form(min_length=8, max_length=64)],
) -> Response:
    """Top the wallet up through a channel; locally the simulated gateway's page."""
    token = page.require_login()
    fen = _yuan_to_fen(amount)
    if fen is None:
        return await _profile(page, token, status_code=400, error=page.t("wallet.bad_amount"))
    try:
        started = await page.backends.post(
            "payment",
            "/wallet/top-ups",
            token=token,
            json={"amount": fen, "channel": channel},
            headers={"Idempotency-Key": f"web-{page.session.user_id}-{request_id}"},
        )
    except BackendError as exc:
        if exc.status >= 500:
            raise
        return await _profile(page, token, status_code=400, error=exc.message)
    return page.render("account/top_up.html", top_up=started)


@router.post("/me/top-ups/{top_up_id}/gateway")
async def pay_top_up_in_gateway(
    page: PageDep,
    top_up_id: str,
    channel: Annotated[str, Form(pattern=r"^(alipay|wechat_pay)$")],
    trade_no: Annotated[str, Form(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")],
) -> Response:
    """The local platform's simulated gateway pays the top-up's trade."""
    page.require_login()
    await page.backends.post("payment", f"/simulator/{channel}/pay/{trade_no}")
    return page.redirect("/me")


def _yuan_to_fen(amount: str) -> int | None:
    try:
        fen = round(float(amount) * 100)
    except ValueError:
        return None
    return fen if 0 < fen <= 10_000_000 else None


@router.post("/language")
async def switch_language(
    page: PageDep,
    language: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/",
) -> Response:
    response = page.redirect(_safe_next(next))
    if language in LANGUAGES:
        response.set_cookie(
            LANGUAGE_COOKIE,
            language,
            max_age=365 * 24 * 3600,
            path="/",
            httponly=True,
            samesite="lax",
            secure=is_secure(page.request, page.settings),
        )
    return response
