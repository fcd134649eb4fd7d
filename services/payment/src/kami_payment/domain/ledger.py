"""The double-entry ledger's rules (DESIGN §4): accounts, postings, movements.

Pure: no I/O. How movements are stored and applied safely is
`kami_payment.ledger` and `kami_payment.adapters.journal`.

Every account has a signed balance in fen: debits add, credits subtract.
A movement is one journal entry whose postings sum to zero, so the sum of
all balances is always zero. Accounts on the credit side of the platform's
books (what Kami owes: wallets, escrow, seller balances and deposits, its own
fee income) are *credit-normal*: their natural balance, the one people read,
is the negated signed balance. Asset accounts (money a channel holds for
Kami, money a seller owes it) and the platform's expenses (the discounts it
funds) are debit-normal.

| account | id | normal | may go below zero |
|---|---|---|---|
| buyer wallet | `buyer_wallet:<buyer_id>` | credit | never (guarded) |
| channel clearing | `channel_clearing:<channel>` | debit | yes: a receivable from the channel |
| escrow | `escrow:<payment_id>` | credit | never (guarded) |
| seller balance | `seller_balance:<seller_id>` | credit | never (guarded) |
| seller deposit | `seller_deposit:<seller_id>` | credit | never (guarded) |
| seller receivable | `seller_receivable:<seller_id>` | debit | yes: what the seller owes |
| platform fees | `platform_fees:platform` | credit | yes (income) |
| platform promotions | `platform_promotions:platform` | debit | yes (an expense) |
| reseller margin | `reseller_margin:<reseller_id>` | credit | never debited (its earnings) |

The platform promotions account is what the platform paid sellers for the
discounts it funds: debited at settlement by a platform-funded discount (the
seller receives the price before the discount), credited back when a refund
after settlement takes that discount back from the seller.

A reseller's prepaid balance is the buyer wallet of the reseller's identity
user (topped up like any wallet); a reseller order captures the reseller's
price from it: the offer's price into escrow, the margin to `reseller_margin`.

Escrow is one account per payment, so an order's money is visibly either
still held, with the seller, or back with the buyer.

A *guarded* posting is a debit on an account that must never go below zero.
A movement holds at most one, and it is applied first: if the account cannot
cover it, the movement is rejected before anything else moved, so no
movement ever needs undoing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from kami_events.catalogue.payment import PaymentChannel

BASIS_POINTS = 10_000


class AccountType(StrEnum):
    BUYER_WALLET = "buyer_wallet"
    CHANNEL_CLEARING = "channel_clearing"
    ESCROW = "escrow"
    SELLER_BALANCE = "seller_balance"
    SELLER_DEPOSIT = "seller_deposit"
    SELLER_RECEIVABLE = "seller_receivable"
    PLATFORM_FEES = "platform_fees"
    PLATFORM_PROMOTIONS = "platform_promotions"
    RESELLER_MARGIN = "reseller_margin"

    @property
    def credit_normal(self) -> bool:
        return self not in (
            AccountType.CHANNEL_CLEARING,
            AccountType.SELLER_RECEIVABLE,
            AccountType.PLATFORM_PROMOTIONS,
        )

    @property
    def never_negative(self) -> bool:
        """Its natural balance may never go below zero: debits on it are guarded."""
        return self in (
            AccountType.BUYER_WALLET,
            AccountType.ESCROW,
            AccountType.SELLER_BALANCE,
            AccountType.SELLER_DEPOSIT,
        )


PLATFORM = "platform"


@dataclass(frozen=True, order=True)
class Account:
    type: AccountType
    owner: str

    @property
    def id(self) -> str:
        return f"{self.type.value}:{self.owner}"

    @classmethod
    def parse(cls, account_id: str) -> Account:
        kind, sep, owner = account_id.partition(":")
        if not sep or not owner:
            raise ValueError(f"not an account id: {account_id!r}")
        return cls(AccountType(kind), owner)

    def natural(self, signed_balance: int) -> int:
        """The balance as its holder reads it (a wallet's money is a positive number)."""
        return -signed_balance if self.type.credit_normal else signed_balance

    def __str__(self) -> str:
        return self.id


def buyer_wallet(buyer_id: str) -> Account:
    return Account(AccountType.BUYER_WALLET, buyer_id)


def channel_clearing(channel: PaymentChannel) -> Account:
    if channel is PaymentChannel.WALLET:
        raise ValueError("the wallet is not an external channel")
    return Account(AccountType.CHANNEL_CLEARING, channel.value)


def escrow(payment_id: str) -> Account:
    return Account(AccountType.ESCROW, payment_id)


def seller_balance(seller_id: str) -> Account:
    return Account(AccountType.SELLER_BALANCE, seller_id)


def seller_deposit(seller_id: str) -> Account:
    return Account(AccountType.SELLER_DEPOSIT, seller_id)


def seller_receivable(seller_id: str) -> Account:
    return Account(AccountType.SELLER_RECEIVABLE, seller_id)


def reseller_margin(reseller_id: str) -> Account:
    return Account(AccountType.RESELLER_MARGIN, reseller_id)


def platform_fees() -> Account:
    return Account(AccountType.PLATFORM_FEES, PLATFORM)


def platform_promotions() -> Account:
    return Account(AccountType.PLATFORM_PROMOTIONS, PLATFORM)


@dataclass(frozen=True)
class Posting:
    """One line of a movement: `amount` fen debited (> 0) or credited (< 0)."""

    account: Account
    amount: int

    def __post_init__(self) -> None:
        if not isinstance(self.amount, int) or isinstance(self.amount, bool) or self.amount == 0:
            raise ValueError(f"a posting moves a non-zero int amount, got {self.amount!r}")

    @property
    def guarded(self) -> bool:
        """A debit on an account that must never go below zero."""
        return self.amount > 0 and self.account.type.never_negative


def debit(account: Account, amount: int) -> Posting:
    _positive(amount)
    return Posting(account, amount)


def credit(account: Account, amount: int) -> Posting:
    _positive(amount)
    return Posting(account, -amount)


class MovementPurpose(StrEnum):
    """Why money moved; decides what is recorded once the movement is applied."""

    PAYMENT_CAPTURE = "payment_capture"
    SETTLEMENT = "settlement"
    REFUND = "refund"
    CHARGEBACK_RECOVERY = "chargeback_recovery"
    REVERSAL = "reversal"
    WALLET_TOP_UP = "wallet_top_up"
    DEPOSIT_TOP_UP = "deposit_top_up"


MetaValue = str | int | None


@dataclass(frozen=True)
class Movement:
    """One journal entry: postings whose debits equal their credits.

    `id` makes it idempotent: the same id moves money once, however often it
    is submitted. `meta` carries what the purpose's follow-up needs to record
    it (payment, order, refund ids...). Never a secret.
    """

    id: str
    purpose: MovementPurpose
    postings: tuple[Posting, ...]
    meta: Mapping[str, MetaValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.id or len(self.id) > 200:
            raise ValueError("a movement needs an id of at most 200 characters")
        if len(self.postings) < 2:
            raise ValueError(f"{self.id}: a movement needs at least two postings")
        if sum(p.amount for p in self.postings) != 0:
            raise ValueError(f"{self.id}: debits and credits differ: {self.postings}")
        accounts = [p.account for p in self.postings]
        if len(set(accounts)) != len(accounts):
            raise ValueError(f"{self.id}: an account appears twice")
        if sum(1 for p in self.postings if p.guarded) > 1:
            raise ValueError(f"{self.id}: at most one guarded debit per movement")

    @property
    def amount(self) -> int:
        """The total debited (= the total credited)."""
        return sum(p.amount for p in self.postings if p.amount > 0)

    def in_application_order(self) -> tuple[Posting, ...]:
        """The guarded debit first: if it is refused, nothing else has moved."""
        return tuple(sorted(self.postings, key=lambda p: not p.guarded))

    def posting_for(self, account: Account) -> Posting | None:
        return next((p for p in self.postings if p.account == account), None)

    def touches(self, account_type: AccountType) -> list[Account]:
        return [p.account for p in self.postings if p.account.type is account_type]


def platform_fee(gross: int, fee_bps: int) -> int:
    """The platform's cut of `gross` at `fee_bps` basis points, rounded half up."""
    if not 0 <= fee_bps <= BASIS_POINTS:
        raise ValueError(f"fee must be 0..{BASIS_POINTS} basis points, got {fee_bps}")
    _positive(gross)
    return (gross * fee_bps + BASIS_POINTS // 2) // BASIS_POINTS


def balances_after(movement: Movement, before: Mapping[Account, int]) -> dict[Account, int]:
    """Signed balances of the movement's accounts once it is applied."""
    return {p.account: before.get(p.account, 0) + p.amount for p in movement.postings}


def postings_of(*entries: tuple[Account, int]) -> tuple[Posting, ...]:
    """Postings from (account, signed amount) pairs, dropping zero amounts."""
    return tuple(Posting(account, amount) for account, amount in entries if amount != 0)


def total(postings: Sequence[Posting]) -> int:
    return sum(p.amount for p in postings)


def _positive(amount: int) -> None:
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise ValueError(f"amount must be a positive int of fen, got {amount!r}")
