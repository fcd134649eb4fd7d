"""The payment service's HTTP API: thin routes that validate and dispatch.

Buyers pay orders, keep a wallet (payment password, top-ups, statement);
sellers top up and read their deposit and statement; operators read the
ledger's trial balance. Channels post their signed notifications to
`/callbacks/{channel}` (and `/callbacks/{channel}/reversal`), which answer in
the channel's own format rather than Kami's error body, since the channel
reads them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from kami_events.catalogue.common import Id
from kami_events.catalogue.identity import Role
from kami_events.catalogue.ordering import DiscountFunder
from kami_events.catalogue.payment import PaymentChannel, PaymentFailure
from kami_events.money import Currency, PositiveAmount
from kami_payment.adapters.gateway_orders import GatewayOrder, GatewayPurpose
from kami_payment.adapters.gateways.base import PayInstruction
from kami_payment.adapters.journal import JournalLine
from kami_payment.domain.ledger import (
    AccountType,
    buyer_wallet,
    seller_balance,
    seller_deposit,
    seller_receivable,
)
from kami_payment.domain.payment import Payment, PaymentStatus
from kami_payment.domain.refusals import RefusalKind, Refused
from kami_payment.handlers import PasswordFreeView, PaymentService
from kami_web.auth import CurrentUser, Principal, require_roles
from kami_web.errors import ErrorResponse

Buyer = Annotated[Principal, Depends(require_roles(Role.BUYER))]
Seller = Annotated[Principal, Depends(require_roles(Role.SELLER))]
Operator = Annotated[Principal, Depends(require_roles(Role.OPERATOR))]

GatewayChannel = Literal["wechat_pay", "alipay"]


def payment_service(request: Request) -> PaymentService:
    service: PaymentService = request.app.state.payment_service
    return service


Service = Annotated[PaymentService, Depends(payment_service)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PayRequest(Body):
    order_id: Id
    channel: Literal["wallet", "wechat_pay", "alipay"]
    payment_password: str | None = Field(
        default=None, max_length=64, description="Required for the wallet channel."
    )


class PayInstructionBody(BaseModel):
    channel: PaymentChannel
    gateway_trade_no: str
    expires_at: datetime
    code_url: str | None = None
    pay_url: str | None = None
    simulator_pay: str | None = Field(
        default=None,
        description="Local platform only: POST here to pay as a buyer in the channel's app.",
    )


class PaymentBody(BaseModel):
    payment_id: str
    order_id: str
    buyer_id: str
    seller_id: str
    amount: int
    currency: Currency = "CNY"
    channel: PaymentChannel
    status: PaymentStatus
    failure: PaymentFailure | None
    second_factor_waived: bool = Field(
        default=False, description="Paid from the wallet without the password (password-free)."
    )
    discount: int = Field(default=0, description="The order's coupon discount, already off amount.")
    discount_funded_by: DiscountFunder | None = Field(
        default=None, description="Who funds the discount (the platform pays it at settlement)."
    )
    captured: int
    refunded: int
    settled: bool
    reversed: bool
    expires_at: datetime | None
    pay: PayInstructionBody | None = None


class PaymentPasswordRequest(Body):
    new_password: str = Field(min_length=1, max_length=64, description="Six digits.")
    current_password: str | None = Field(
        default=None, max_length=64, description="Required to change an existing one."
    )


class WalletBody(BaseModel):
    buyer_id: str
    balance: int
    currency: Currency = "CNY"
    has_payment_password: bool
    locked_until: datetime | None
    daily_payment_limit: int
    spent_today: int


class PasswordFreeRequest(Body):
    enabled: bool
    per_payment_limit: int | None = Field(
        default=None, ge=1, le=10**9, description="Fen; at most 20000 (200 yuan)."
    )
    daily_cap: int | None = Field(default=None, ge=1, le=10**9, description="Fen per day.")
    payment_password: str | None = Field(
        default=None, max_length=64, description="Required to turn on or change; not to turn off."
    )


class PasswordFreeBody(BaseModel):
    enabled: bool
    per_payment_limit: int
    daily_cap: int
    spent_today: int = Field(description="Password-free payments today (Asia/Shanghai), fen.")
    max_per_payment: int
    max_daily_cap: int
    currency: Currency = "CNY"


class TopUpRequest(Body):
    amount: PositiveAmount
    channel: GatewayChannel


class TopUpBody(BaseModel):
    top_up_id: str
    amount: int
    currency: Currency = "CNY"
    channel: PaymentChannel
    status: str
    created_at: datetime
    expires_at: datetime
    pay: PayInstructionBody | None = None


class DepositBody(BaseModel):
    seller_id: str
    category: str | None = Field(
        description="The category the seller was approved for; it sets the minimum."
    )
    balance: int
    minimum: int = Field(description="This seller's minimum (by its category), in fen.")
    below_minimum: bool
    shortfall: int
    owed: int = Field(description="Advanced by the platform; to be repaid by the seller.")
    seller_balance: int
    currency: Currency = "CNY"


class StatementLine(BaseModel):
    at: datetime
    account: str
    account_type: AccountType
    seq: int
    change: int = Field(description="Signed as the account holder reads it: + money in.")
    balance: int
    purpose: str
    order_id: str | None
    movement_id: str


class StatementBody(BaseModel):
    lines: list[StatementLine]
    limit: int
    offset: int


class TrialBalanceBody(BaseModel):
    totals: dict[AccountType, int] = Field(
        description="Sum of applied postings per account type (debits +, credits −)."
    )
    total: int = Field(description="Their sum: zero whenever no movement is in flight.")
    balanced: bool
    movements_in_flight: int


# Refusals (`Refused`, by `REFUSAL_STATUS`), in Kami's error body.
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (403, 404, 409, 422)
}
ERRORS[429] = {
    "model": ErrorResponse,
    "description": "Too many payment passwords being checked at once; nothing was done. "
    "Retry after the `Retry-After` seconds.",
}
# What a channel reads back from a callback: its own format, not Kami's.
CHANNEL_ANSWERS: dict[int | str, dict[str, Any]] = {
    status: {"description": description, "content": {"text/plain": {}, "application/json": {}}}
    for status, description in (
        (200, 'Accepted (also for a duplicate): `success` or `{"code": "SUCCESS"}`'),
        (401, "Not authentic or not readable: refused, nothing done"),
        (404, "Authentic, but for a trade Kami never opened"),
    )
}

router = APIRouter(tags=["payment"], responses=ERRORS)


@router.post("/payments", summary="Pay an order (wallet, or a channel's pay instruction)")
async def pay(body: PayRequest, buyer: Buyer, service: Service, request: Request) -> PaymentBody:
    outcome = await service.pay(
        buyer_id=buyer.subject,
        order_id=body.order_id,
        channel=PaymentChannel(body.channel),
        payment_password=body.payment_password,
        request_id=request.headers.get("x-request-id") or f"http:{buyer.token_id}",
    )
    return _payment_body(outcome.payment, outcome.instruction, request)


@router.get("/payments/{payment_id}", summary="A payment intent")
async def get_payment(payment_id: str, user: CurrentUser, service: Service) -> PaymentBody:
    return _payment_body(_visible(await service.payment(payment_id), user, payment_id))


@router.get("/orders/{order_id}/payment", summary="The payment intent of an order")
async def get_order_payment(order_id: str, user: CurrentUser, service: Service) -> PaymentBody:
    return _payment_body(_visible(await service.payment_of_order(order_id), user, order_id))


@router.put(
    "/wallet/payment-password", status_code=204, summary="Set or change the payment password"
)
async def set_payment_password(
    body: PaymentPasswordRequest, buyer: Buyer, service: Service
) -> Response:
    await service.set_payment_password(buyer.subject, body.new_password, body.current_password)
    return Response(status_code=204)


@router.get("/wallet", summary="The buyer's wallet")
async def get_wallet(buyer: Buyer, service: Service) -> WalletBody:
    view = await service.wallet(buyer.subject)
    return WalletBody(
        buyer_id=view.buyer_id,
        balance=view.balance,
        has_payment_password=view.has_payment_password,
        locked_until=view.locked_until,
        daily_payment_limit=view.daily_payment_limit,
        spent_today=view.spent_today,
    )


@router.get("/wallet/password-free", summary="The buyer's password-free small payments setting")
async def get_password_free(buyer: Buyer, service: Service) -> PasswordFreeBody:
    return _password_free_body(await service.password_free_setting(buyer.subject))


@router.put(
    "/wallet/password-free",
    summary="Turn password-free small payments on (with the payment password) or off",
)
async def set_password_free(
    body: PasswordFreeRequest, buyer: Buyer, service: Service
) -> PasswordFreeBody:
    view = await service.set_password_free(
        buyer.subject,
        enabled=body.enabled,
        per_payment_limit=body.per_payment_limit,
        daily_cap=body.daily_cap,
        payment_password=body.payment_password,
    )
    return _password_free_body(view)


def _password_free_body(view: PasswordFreeView) -> PasswordFreeBody:
    return PasswordFreeBody(
        enabled=view.setting.enabled,
        per_payment_limit=view.setting.per_payment_limit,
        daily_cap=view.setting.daily_cap,
        spent_today=view.spent_today,
        max_per_payment=view.bounds.max_per_payment,
        max_daily_cap=view.bounds.max_daily_cap,
    )


@router.get("/wallet/statement", summary="The wallet's journal, newest first")
async def wallet_statement(
    buyer: Buyer,
    service: Service,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> StatementBody:
    lines = await service.statement([buyer_wallet(buyer.subject)], limit=limit, offset=offset)
    return _statement(lines, limit, offset)


@router.post("/wallet/top-ups", status_code=201, summary="Top up the wallet through a channel")
async def wallet_top_up(
    body: TopUpRequest,
    buyer: Buyer,
    service: Service,
    request: Request,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> TopUpBody:
    outcome = await service.start_top_up(
        purpose=GatewayPurpose.WALLET_TOP_UP,
        owner_id=buyer.subject,
        amount=body.amount,
        channel=PaymentChannel(body.channel),
        idempotency_key=idempotency_key,
    )
    return _top_up_body(outcome.top_up, outcome.instruction, request)


@router.get("/top-ups/{top_up_id}", summary="A wallet or deposit top-up")
async def get_top_up(top_up_id: str, user: CurrentUser, service: Service) -> TopUpBody:
    return _top_up_body(await service.top_up(user.subject, top_up_id), None)


@router.post("/deposits/top-ups", status_code=201, summary="Top up the seller's deposit")
async def deposit_top_up(
    body: TopUpRequest,
    seller: Seller,
    service: Service,
    request: Request,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> TopUpBody:
    outcome = await service.start_top_up(
        purpose=GatewayPurpose.DEPOSIT_TOP_UP,
        owner_id=seller.subject,
        amount=body.amount,
        channel=PaymentChannel(body.channel),
        idempotency_key=idempotency_key,
    )
    return _top_up_body(outcome.top_up, outcome.instruction, request)


@router.get("/deposits/me", summary="The seller's deposit, balance and what it owes")
async def my_deposit(seller: Seller, service: Service) -> DepositBody:
    view = await service.deposit(seller.subject)
    return DepositBody(
        seller_id=view.seller_id,
        category=view.category,
        balance=view.balance,
        minimum=view.minimum,
        below_minimum=view.balance < view.minimum,
        shortfall=view.shortfall,
        owed=view.owed,
        seller_balance=view.seller_balance,
    )


@router.get("/sellers/me/statement", summary="The seller's balance, deposit and receivable")
async def seller_statement(
    seller: Seller,
    service: Service,
    account: Annotated[Literal["balance", "deposit", "receivable"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> StatementBody:
    accounts = {
        "balance": seller_balance(seller.subject),
        "deposit": seller_deposit(seller.subject),
        "receivable": seller_receivable(seller.subject),
    }
    chosen = [accounts[account]] if account else list(accounts.values())
    lines = await service.statement(chosen, limit=limit, offset=offset)
    return _statement(lines, limit, offset)


@router.get("/ledger/trial-balance", summary="Per-account-type totals (operators)")
async def trial_balance(operator: Operator, service: Service) -> TrialBalanceBody:
    trial = await service.trial_balance()
    return TrialBalanceBody(
        totals=trial.totals,
        total=trial.total,
        balanced=trial.balanced,
        movements_in_flight=trial.movements_in_flight,
    )


@router.post(
    "/callbacks/{channel}",
    summary="A channel's signed payment notification",
    tags=["channels"],
    response_class=Response,
    responses=CHANNEL_ANSWERS,
)
async def payment_callback(channel: GatewayChannel, request: Request, service: Service) -> Response:
    answer = await service.receive_payment_notice(
        PaymentChannel(channel), dict(request.headers), await request.body()
    )
    return Response(answer.body, status_code=answer.status_code, media_type=answer.media_type)


@router.post(
    "/callbacks/{channel}/reversal",
    summary="A channel's signed chargeback notification",
    tags=["channels"],
    response_class=Response,
    responses=CHANNEL_ANSWERS,
)
async def reversal_callback(
    channel: GatewayChannel, request: Request, service: Service
) -> Response:
    answer = await service.receive_reversal_notice(
        PaymentChannel(channel), dict(request.headers), await request.body()
    )
    return Response(answer.body, status_code=answer.status_code, media_type=answer.media_type)


REFUSAL_STATUS = {
    RefusalKind.NOT_FOUND: 404,
    RefusalKind.FORBIDDEN: 403,
    RefusalKind.CONFLICT: 409,
    RefusalKind.INVALID: 422,
    RefusalKind.BUSY: 429,
}


def _visible(payment: Payment | None, user: Principal, what: str) -> Payment:
    staff = user.has_role(Role.SUPPORT) or user.has_role(Role.OPERATOR)
    if payment is None or not (staff or payment.buyer_id == user.subject):
        raise Refused("payment_not_found", f"No payment for {what}.", RefusalKind.NOT_FOUND)
    return payment


def _instruction(
    instruction: PayInstruction | None, request: Request | None
) -> PayInstructionBody | None:
    if instruction is None:
        return None
    simulated = request is not None and bool(
        getattr(request.app.state, "payment_simulator_enabled", False)
    )
    channel = instruction.channel.value
    return PayInstructionBody(
        channel=instruction.channel,
        gateway_trade_no=instruction.gateway_trade_no,
        expires_at=instruction.expires_at,
        code_url=instruction.fields.get("code_url"),
        pay_url=instruction.fields.get("pay_url"),
        simulator_pay=f"/simulator/{channel}/pay/{instruction.gateway_trade_no}"
        if simulated
        else None,
    )


def _payment_body(
    payment: Payment,
    instruction: PayInstruction | None = None,
    request: Request | None = None,
) -> PaymentBody:
    assert payment.status is not None
    return PaymentBody(
        payment_id=payment.id,
        order_id=payment.order_id,
        buyer_id=payment.buyer_id,
        seller_id=payment.seller_id,
        amount=payment.amount,
        channel=payment.channel,
        status=payment.status,
        failure=payment.failure,
        second_factor_waived=payment.second_factor_waived,
        discount=payment.discount,
        discount_funded_by=payment.discount_funded_by,
        captured=payment.captured,
        refunded=payment.refunded,
        settled=payment.settlement is not None,
        reversed=payment.reversal is not None,
        expires_at=payment.expires_at,
        pay=_instruction(instruction, request),
    )


def _top_up_body(
    order: GatewayOrder, instruction: PayInstruction | None, request: Request | None = None
) -> TopUpBody:
    return TopUpBody(
        top_up_id=order.out_trade_no,
        amount=order.amount,
        channel=order.channel,
        status=order.status.value,
        created_at=order.created_at,
        expires_at=order.expires_at,
        pay=_instruction(instruction, request),
    )


def _statement(lines: list[JournalLine], limit: int, offset: int) -> StatementBody:
    return StatementBody(
        lines=[
            StatementLine(
                at=line.at,
                account=line.account.id,
                account_type=line.account.type,
                seq=line.seq,
                change=line.account.natural(line.amount),
                balance=line.account.natural(line.balance_after),
                purpose=line.purpose.value,
                order_id=line.order_id,
                movement_id=line.movement_id,
            )
            for line in lines
        ],
        limit=limit,
        offset=offset,
    )
