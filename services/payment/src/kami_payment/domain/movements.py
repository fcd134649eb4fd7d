"""The ledger movement of every money flow, built from the payment's plans.

| flow | debit | credit |
|---|---|---|
| wallet payment | buyer wallet (guarded) | escrow |
| gateway payment | channel clearing | escrow |
| settlement | escrow (guarded) | seller balance (net), platform fees (fee) |
| ... with a platform-funded discount | escrow (guarded), platform promotions | the same |
| refund before settlement | escrow (guarded) | buyer wallet or channel clearing |
| refund after settlement | seller deposit (guarded) + receivable (the rest) | wallet or clearing |
| ... of a platform-funded discount | the same, also for its share | the same, promotions |
| chargeback before settlement | escrow (guarded) | channel clearing |
| chargeback after settlement | seller receivable | channel clearing, promotions (its share) |
| chargeback recovery | seller deposit (guarded) | seller receivable |
| wallet / deposit top-up | channel clearing | buyer wallet / seller deposit |
| top-up while the seller owes | channel clearing | receivable (the debt), deposit (rest) |

Movement ids name what they realise, so that submitting the same thing twice
moves money once: `capture:<channel>:<out_trade_no>`, `settle:<payment>:<n>`,
`refund:<refund_id>:<n>`, `reversal:<payment>:<n>`. `<n>` numbers the attempts of
a flow whose guarded debit may be refused and then planned again (a wallet
short of funds, a deposit drawn by a concurrent refund).
"""

from __future__ import annotations

from datetime import datetime

from kami_events.catalogue.payment import PaymentChannel, ReversalReason
from kami_payment.domain.ledger import (
    Account,
    Movement,
    MovementPurpose,
    buyer_wallet,
    channel_clearing,
    escrow,
    platform_fees,
    platform_promotions,
    postings_of,
    reseller_margin,
    seller_balance,
    seller_deposit,
    seller_receivable,
)
from kami_payment.domain.payment import Payment, RefundPlan, ReversalPlan, SettlementPlan


def gateway_capture_id(channel: PaymentChannel, out_trade_no: str) -> str:
    return f"capture:{channel.value}:{out_trade_no}"


def wallet_capture(
    movement_id: str,
    payment: Payment,
    *,
    counted_at: datetime,
    password_free_at: datetime | None = None,
) -> Movement:
    """The buyer's wallet pays the order into the payment's escrow. `counted_at`
    names the day whose limit the payment counts against, released if refused;
    `password_free_at`, for a payment made without the password, the day whose
    password-free cap it counts against (the movement records the waiver)."""
    waiver: dict[str, str | int | None] = (
        {"second_factor_waived": 1, "password_free_counted_at": password_free_at.isoformat()}
        if password_free_at is not None
        else {}
    )
    return Movement(
        id=movement_id,
        purpose=MovementPurpose.PAYMENT_CAPTURE,
        postings=postings_of(
            (buyer_wallet(payment.buyer_id), payment.amount),
            (escrow(payment.id), -payment.amount),
        ),
        meta={
            **_payment_meta(payment),
            "amount": payment.amount,
            "channel_reference": movement_id,
            "limit_counted_at": counted_at.isoformat(),
            **waiver,
        },
    )


def reseller_capture(
    movement_id: str, payment: Payment, *, reseller_id: str, reseller_total: int
) -> Movement:
    """A reseller's order: its prepaid balance (the wallet of its identity user)
    pays the reseller price; the order's total goes into escrow as for any
    order, the difference (the reseller's margin) to the reseller's margin
    account. No password and no daily limit: the reseller signed the request."""
    margin = reseller_total - payment.amount
    if margin < 0:
        raise ValueError("a reseller price is never below the order's total")
    return Movement(
        id=movement_id,
        purpose=MovementPurpose.PAYMENT_CAPTURE,
        postings=postings_of(
            (buyer_wallet(payment.buyer_id), reseller_total),
            (escrow(payment.id), -payment.amount),
            (reseller_margin(reseller_id), -margin),
        ),
        meta={
            **_payment_meta(payment),
            "amount": payment.amount,
            "channel_reference": movement_id,
            "reseller_id": reseller_id,
            "reseller_total": reseller_total,
            "margin": margin,
        },
    )


def gateway_capture(
    *,
    purpose: MovementPurpose,
    channel: PaymentChannel,
    out_trade_no: str,
    amount: int,
    credited: Account,
    channel_reference: str,
    meta: dict[str, str | int | None],
    repays: tuple[Account, int] | None = None,
) -> Movement:
    """A channel captured `amount`: the channel now holds it for Kami (clearing),
    and Kami owes it to `credited` (an escrow, a wallet or a deposit). With
    `repays`, part of it first pays back what a seller owes (its receivable,
    left after a refund its deposit could not cover): only the rest reaches
    `credited`, in the same movement, so the deposit never shows a balance
    that the debt then takes away again."""
    receivable, owed = repays if repays is not None else (None, 0)
    repaid = min(max(owed, 0), amount)
    entries = [(channel_clearing(channel), amount), (credited, -(amount - repaid))]
    if receivable is not None:
        entries.append((receivable, -repaid))
    return Movement(
        id=gateway_capture_id(channel, out_trade_no),
        purpose=purpose,
        postings=postings_of(*entries),
        meta={
            **meta,
            "out_trade_no": out_trade_no,
            "amount": amount,
            "channel": channel.value,
            "channel_reference": channel_reference,
            "repaid_receivable": repaid,
        },
    )


def settlement(movement_id: str, payment: Payment, plan: SettlementPlan) -> Movement:
    """Escrow to the seller, less the fee. A platform-funded discount is paid
    in the same entry, from the promotions expense, so the seller receives the
    price before the discount and the entry still balances."""
    return Movement(
        id=movement_id,
        purpose=MovementPurpose.SETTLEMENT,
        postings=postings_of(
            (escrow(payment.id), plan.gross),
            (platform_promotions(), plan.promotion),
            (seller_balance(payment.seller_id), -plan.net),
            (platform_fees(), -plan.fee),
        ),
        meta={
            **_payment_meta(payment),
            "gross": plan.gross,
            "fee": plan.fee,
            "promotion": plan.promotion,
        },
    )


def refund(
    movement_id: str, payment: Payment, plan: RefundPlan, deposit_available: int
) -> Movement:
    """A refund (or chargeback recovery). From the deposit, whatever it cannot
    cover becomes a receivable from the seller: the platform advances it, and
    the deposit never goes below zero. After settlement the seller also gives
    back its share of a platform-funded discount (`plan.promotion`), which
    reverses the platform's promotion expense; the buyer gets `plan.amount`."""
    if not plan.moves_money:
        raise ValueError(f"refund {plan.refund_id} moves no money")
    meta = {
        **_payment_meta(payment),
        "refund_id": plan.refund_id,
        "amount": plan.amount,
        "source": plan.source.value,
        "reason": plan.reason.value,
        "destination": plan.destination,
        "promotion": plan.promotion,
    }
    if plan.destination == "none":
        # A chargeback recovery: the buyer already has the money back from the
        # channel; the seller's deposit pays off what the seller owes (with
        # the promotion the chargeback took back, if any).
        drawn = min(plan.amount + plan.promotion, deposit_available)
        if drawn == 0:
            raise NothingToDraw(payment.seller_id)
        return Movement(
            id=movement_id,
            purpose=MovementPurpose.CHARGEBACK_RECOVERY,
            postings=postings_of(
                (seller_deposit(payment.seller_id), drawn),
                (seller_receivable(payment.seller_id), -drawn),
            ),
            meta={**meta, "drawn_from_deposit": drawn},
        )
    destination = (
        buyer_wallet(payment.buyer_id)
        if plan.destination == "wallet"
        else channel_clearing(payment.channel)
    )
    if plan.source.value == "escrow":
        if plan.promotion:
            raise ValueError(f"refund {plan.refund_id}: no promotion was paid before settlement")
        debits = [(escrow(payment.id), plan.amount)]
        drawn = 0
    else:
        owed = plan.amount + plan.promotion
        drawn = min(owed, deposit_available)
        debits = [
            (seller_deposit(payment.seller_id), drawn),
            (seller_receivable(payment.seller_id), owed - drawn),
        ]
    return Movement(
        id=movement_id,
        purpose=MovementPurpose.REFUND,
        postings=postings_of(
            *debits, (destination, -plan.amount), (platform_promotions(), -plan.promotion)
        ),
        meta={**meta, "drawn_from_deposit": drawn},
    )


class NothingToDraw(Exception):
    """The seller's deposit is empty: a recovery stays owed in full."""


def reversal(
    movement_id: str,
    payment: Payment,
    plan: ReversalPlan,
    reason: ReversalReason,
    channel_reference: str,
) -> Movement:
    """The channel took `amount` back from Kami. Unsettled, escrow pays it;
    settled, the seller owes it until recovered from the deposit, with its
    share of a platform-funded discount (the promotion expense is reversed,
    as by a refund after settlement)."""
    if plan.promotion and not plan.settled:
        raise ValueError(f"{movement_id}: no promotion was paid before settlement")
    debited = seller_receivable(payment.seller_id) if plan.settled else escrow(payment.id)
    return Movement(
        id=movement_id,
        purpose=MovementPurpose.REVERSAL,
        postings=postings_of(
            (debited, plan.amount + plan.promotion),
            (channel_clearing(payment.channel), -plan.amount),
            (platform_promotions(), -plan.promotion),
        ),
        meta={
            **_payment_meta(payment),
            "amount": plan.amount,
            "settled": int(plan.settled),
            "promotion": plan.promotion,
            "reason": reason.value,
            "channel_reference": channel_reference,
        },
    )


def _payment_meta(payment: Payment) -> dict[str, str | int | None]:
    return {
        "payment_id": payment.id,
        "order_id": payment.order_id,
        "buyer_id": payment.buyer_id,
        "seller_id": payment.seller_id,
    }
