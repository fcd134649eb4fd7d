"""LOCAL STAND-IN FOR THE REAL PAYMENT GATEWAYS: what happens at the channel.

These routes play the buyer paying in the channel's app and the channel's
risk department raising a chargeback (see
`kami_payment.adapters.gateways.simulator`). After the simulated event, the
channel's signed notification is delivered to Kami's own callback handler in
process — the same code `POST /callbacks/{channel}` runs, verification
included — unless `deliver=false`, which plays a lost notification (the
poller then finds the payment, or `/notify` delivers it late).

Mounted only while `KAMI_PAYMENT_SIMULATOR_ENABLED` is true.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from kami_events.catalogue.payment import PaymentChannel
from kami_events.money import PositiveAmount
from kami_payment.adapters.gateways.base import CallbackAnswer, SignedNotice
from kami_payment.adapters.gateways.simulator import (
    SimulatedGateway,
    SimulatedTrade,
    SimulatorError,
)
from kami_payment.api import Service
from kami_web.errors import ApiError, ErrorResponse

SimulatedChannel = Literal["wechat_pay", "alipay"]


class SimulatedTradeBody(BaseModel):
    channel: PaymentChannel
    out_trade_no: str
    gateway_trade_no: str
    amount: int
    status: str
    expires_at: datetime
    paid_at: datetime | None
    refunded: int
    reversed_amount: int


class DeliveryBody(BaseModel):
    """What Kami's callback answered the simulated channel."""

    status_code: int
    body: str


class SimulationBody(BaseModel):
    trade: SimulatedTradeBody
    callback: DeliveryBody | None = Field(
        description="Kami's answer to the notification; null when not delivered."
    )


class ChargebackRequest(BaseModel):
    amount: PositiveAmount | None = Field(default=None, description="Default: all not refunded.")


def simulators(request: Request) -> dict[PaymentChannel, SimulatedGateway]:
    gateways: dict[PaymentChannel, SimulatedGateway] = request.app.state.payment_simulators
    return gateways


Simulators = Annotated[dict[PaymentChannel, SimulatedGateway], Depends(simulators)]

router = APIRouter(
    prefix="/simulator",
    tags=["local gateway simulator"],
    responses={status: {"model": ErrorResponse} for status in (404, 409)},
)


@router.post("/{channel}/pay/{gateway_trade_no}", summary="SIMULATOR: the buyer pays the trade")
async def pay(
    channel: SimulatedChannel,
    gateway_trade_no: str,
    gateways: Simulators,
    service: Service,
    deliver: Annotated[bool, Query(description="false: the notification is lost")] = True,
) -> SimulationBody:
    gateway = gateways[PaymentChannel(channel)]
    try:
        trade = await gateway.pay(gateway_trade_no)
        notice = await gateway.payment_notice(gateway_trade_no) if deliver else None
    except SimulatorError as exc:
        raise ApiError(409, "simulator_refused", str(exc)) from None
    answer = None
    if notice is not None:
        answer = await service.receive_payment_notice(
            PaymentChannel(channel), notice.headers, notice.body
        )
    return _simulation(trade, answer)


@router.post(
    "/{channel}/notify/{gateway_trade_no}",
    summary="SIMULATOR: (re)send the payment notification of a paid trade",
)
async def notify(
    channel: SimulatedChannel, gateway_trade_no: str, gateways: Simulators, service: Service
) -> SimulationBody:
    gateway = gateways[PaymentChannel(channel)]
    try:
        notice = await gateway.payment_notice(gateway_trade_no)
        trade = await gateway.trade(gateway_trade_no)
    except SimulatorError as exc:
        raise ApiError(409, "simulator_refused", str(exc)) from None
    answer = await service.receive_payment_notice(
        PaymentChannel(channel), notice.headers, notice.body
    )
    return _simulation(trade, answer)


@router.post(
    "/{channel}/chargeback/{gateway_trade_no}",
    summary="SIMULATOR: the channel reverses a paid trade and notifies Kami",
)
async def chargeback(
    channel: SimulatedChannel,
    gateway_trade_no: str,
    body: ChargebackRequest,
    gateways: Simulators,
    service: Service,
) -> SimulationBody:
    gateway = gateways[PaymentChannel(channel)]
    try:
        notice: SignedNotice = await gateway.chargeback(gateway_trade_no, body.amount)
        trade = await gateway.trade(gateway_trade_no)
    except SimulatorError as exc:
        raise ApiError(409, "simulator_refused", str(exc)) from None
    answer = await service.receive_reversal_notice(
        PaymentChannel(channel), notice.headers, notice.body
    )
    return _simulation(trade, answer)


@router.get("/{channel}/trades/{gateway_trade_no}", summary="SIMULATOR: a trade at the channel")
async def get_trade(
    channel: SimulatedChannel, gateway_trade_no: str, gateways: Simulators
) -> SimulatedTradeBody:
    try:
        trade = await gateways[PaymentChannel(channel)].trade(gateway_trade_no)
    except SimulatorError as exc:
        raise ApiError(404, "trade_not_found", str(exc)) from None
    return _trade(trade)


def _simulation(trade: SimulatedTrade, answer: CallbackAnswer | None) -> SimulationBody:
    return SimulationBody(
        trade=_trade(trade),
        callback=None
        if answer is None
        else DeliveryBody(status_code=answer.status_code, body=answer.body.decode()),
    )


def _trade(trade: SimulatedTrade) -> SimulatedTradeBody:
    return SimulatedTradeBody(
        channel=trade.channel,
        out_trade_no=trade.out_trade_no,
        gateway_trade_no=trade.gateway_trade_no,
        amount=trade.amount,
        status=trade.status.value,
        expires_at=trade.expires_at,
        paid_at=trade.paid_at,
        refunded=trade.refunded,
        reversed_amount=trade.reversed_amount,
    )
