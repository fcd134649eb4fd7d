"""One valid instance of every catalogue event, as a producer would build it.

Tests use them to round-trip every event and to probe each field; a new event
without a sample fails `test_every_event_has_a_sample`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kami_events import catalogue as c
from kami_events.event import Event

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
USER = "6f1c2a4e-5b7d-4c8e-9a0b-1c2d3e4f5a6b"
BUYER = "b7e0c9d1-2f3a-4b5c-8d6e-7f8091a2b3c4"
SELLER = "5e11e400-aaaa-4bbb-8ccc-0123456789ab"
OPERATOR = "0be7a702-0000-4000-8000-000000000001"
PRODUCT = "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a"
CATEGORY = "c0ffee00-1111-4222-8333-444455556666"
OFFER = "0ffe7000-1234-4567-89ab-cdef01234567"
ORDER = "07de7000-9876-4543-8210-fedcba987654"
PAYMENT = "9a7e0000-4444-4555-8666-777788889999"
REFUND = "7ef0d000-1212-4343-8565-878798980101"
DELIVERY = "de11e700-2222-4333-8444-555566667777"
TICKET = "71c4e700-3333-4444-8555-666677778888"
BATCH = "ba7c4000-5555-4666-8777-888899990000"
KEYS = ["k-0001", "k-0002"]
RESELLER = "7e5e1100-6666-4777-8888-9999aaaabbbb"

SAMPLES: dict[type[Event], Event] = {
    c.UserRegistered: c.UserRegistered(
        user_id=USER, phone_masked="138****1234", roles=[c.Role.BUYER]
    ),
    c.PhoneVerified: c.PhoneVerified(user_id=USER, phone_masked="138****1234"),
    c.IdentityVerified: c.IdentityVerified(
        user_id=USER,
        tier=c.KycTier.REAL_NAME,
        previous_tier=c.KycTier.PHONE,
        daily_payment_limit=500_000,
        delivery_priority=1,
        aftersales_priority=1,
    ),
    c.SellerApproved: c.SellerApproved(
        user_id=SELLER, shop_name="点卡小铺", approved_by=OPERATOR, category="games"
    ),
    c.UserSuspended: c.UserSuspended(
        user_id=USER,
        reason=c.SuspensionReason.CHARGEBACK_ABUSE,
        detail="three chargebacks in a week",
        suspended_by=OPERATOR,
        until=NOW + timedelta(days=30),
    ),
    c.ProductPublished: c.ProductPublished(
        product_id=PRODUCT,
        category_id=CATEGORY,
        name="王者荣耀 100 点券",
        kind=c.ProductKind.GAME_POINTS,
        face_value=10_000,
        required_buyer_fields=["game_account", "server"],
    ),
    c.OfferListed: c.OfferListed(
        offer_id=OFFER,
        product_id=PRODUCT,
        seller_id=SELLER,
        unit_price=9_650,
        delivery_mode=c.DeliveryMode.AUTO,
        manual_delivery_sla_minutes=None,
        guarantee_window_minutes=15,
        max_quantity_per_order=10,
    ),
    c.OfferPriceChanged: c.OfferPriceChanged(
        offer_id=OFFER,
        product_id=PRODUCT,
        seller_id=SELLER,
        old_unit_price=9_650,
        new_unit_price=9_500,
    ),
    c.OfferDelisted: c.OfferDelisted(
        offer_id=OFFER,
        product_id=PRODUCT,
        seller_id=SELLER,
        reason=c.DelistReason.DEPOSIT_BELOW_MINIMUM,
    ),
    c.OrderPlaced: c.OrderPlaced(
        order_id=ORDER,
        buyer_id=BUYER,
        seller_id=SELLER,
        offer_id=OFFER,
        product_id=PRODUCT,
        quantity=2,
        unit_price=9_650,
        total=19_300,
        delivery_mode=c.DeliveryMode.AUTO,
        payment_deadline=NOW + timedelta(minutes=15),
        buyer_fields={"game_account": "player#42", "server": "华东一区"},
    ),
    c.CouponIssued: c.CouponIssued(
        coupon_id="SPRING-10",
        issuer_id=OPERATOR,
        funded_by=c.DiscountFunder.PLATFORM,
        kind=c.CouponKind.PERCENT,
        percent_off=10,
        max_off=2_000,
        min_spend=5_000,
        scope=c.CouponScope.CATEGORY,
        category_id=CATEGORY,
        starts_at=NOW,
        ends_at=NOW + timedelta(days=7),
        uses_per_buyer=1,
        max_uses=500,
    ),
    c.OfferPriceTiersSet: c.OfferPriceTiersSet(
        offer_id=OFFER,
        seller_id=SELLER,
        tiers=[
            c.PriceTier(min_quantity=10, unit_price=920),
            c.PriceTier(min_quantity=100, unit_price=900),
        ],
    ),
    c.FlashSaleScheduled: c.FlashSaleScheduled(
        offer_id=OFFER,
        seller_id=SELLER,
        flash_sale_id=BATCH,
        unit_price=500,
        starts_at=NOW + timedelta(hours=1),
        ends_at=NOW + timedelta(hours=2),
        stock_cap=20,
        max_per_buyer=1,
    ),
    c.CouponHeld: c.CouponHeld(
        order_id=ORDER,
        buyer_id=BUYER,
        seller_id=SELLER,
        offer_id=OFFER,
        coupon_id="SPRING-10",
        discount=1_930,
        funded_by=c.DiscountFunder.PLATFORM,
    ),
    c.CouponReleased: c.CouponReleased(
        order_id=ORDER,
        buyer_id=BUYER,
        seller_id=SELLER,
        offer_id=OFFER,
        coupon_id="SPRING-10",
        reason="payment_timeout",
    ),
    c.CouponRedeemed: c.CouponRedeemed(
        order_id=ORDER,
        buyer_id=BUYER,
        seller_id=SELLER,
        offer_id=OFFER,
        coupon_id="SPRING-10",
        discount=1_930,
        funded_by=c.DiscountFunder.PLATFORM,
    ),
    c.OrderReserved: c.OrderReserved(
        order_id=ORDER,
        buyer_id=BUYER,
        seller_id=SELLER,
        offer_id=OFFER,
        key_ids=KEYS,
        total=19_300,
        payment_deadline=NOW + timedelta(minutes=15),
        reservation_expires_at=NOW + timedelta(minutes=16),
    ),
    c.OrderPaid: c.OrderPaid(
        order_id=ORDER,
        buyer_id=BUYER,
        seller_id=SELLER,
        offer_id=OFFER,
        payment_id=PAYMENT,
        product_id=PRODUCT,
        quantity=2,
        key_ids=KEYS,
        amount=19_300,
        delivery_mode=c.DeliveryMode.AUTO,
    ),
    c.OrderDelivered: c.OrderDelivered(
        order_id=ORDER,
        buyer_id=BUYER,
        seller_id=SELLER,
        offer_id=OFFER,
        delivery_id=DELIVERY,
        key_ids=KEYS,
        guarantee_ends_at=NOW + timedelta(minutes=20),
    ),
    c.OrderCompleted: c.OrderCompleted(
        order_id=ORDER,
        buyer_id=BUYER,
        seller_id=SELLER,
        offer_id=OFFER,
        completed_by=c.CompletedBy.GUARANTEE_ELAPSED,
        total=19_300,
    ),
    c.OrderCancelled: c.OrderCancelled(
        order_id=ORDER,
        buyer_id=BUYER,
        seller_id=SELLER,
        offer_id=OFFER,
        reason=c.CancelReason.PAYMENT_TIMEOUT,
        release_key_ids=KEYS,
    ),
    c.OrderRefundRequested: c.OrderRefundRequested(
        order_id=ORDER,
        buyer_id=BUYER,
        seller_id=SELLER,
        offer_id=OFFER,
        payment_id=PAYMENT,
        refund_id=REFUND,
        amount=9_650,
        source=c.RefundSource.SELLER_DEPOSIT,
        reason=c.RefundReason.CLAIM_UPHELD,
        ticket_id=TICKET,
        void_key_ids=KEYS[:1],
    ),
    c.OrderRefunded: c.OrderRefunded(
        order_id=ORDER,
        buyer_id=BUYER,
        seller_id=SELLER,
        offer_id=OFFER,
        payment_id=PAYMENT,
        refund_id=REFUND,
        amount=9_650,
        source=c.RefundSource.SELLER_DEPOSIT,
        reason=c.RefundReason.CLAIM_UPHELD,
    ),
    c.KeysImported: c.KeysImported(
        offer_id=OFFER,
        seller_id=SELLER,
        product_id=PRODUCT,
        batch_id=BATCH,
        file_format="csv",
        imported=498,
        duplicates=2,
        rejected=0,
        earliest_expires_at=NOW + timedelta(days=90),
    ),
    c.KeyReserved: c.KeyReserved(
        offer_id=OFFER, order_id=ORDER, key_ids=KEYS, expires_at=NOW + timedelta(minutes=16)
    ),
    c.KeyReservationFailed: c.KeyReservationFailed(
        offer_id=OFFER,
        order_id=ORDER,
        reason=c.ReservationFailure.OUT_OF_STOCK,
        requested=2,
        available=1,
    ),
    c.KeysReleased: c.KeysReleased(
        offer_id=OFFER, order_id=ORDER, key_ids=KEYS, reason=c.ReleaseReason.RESERVATION_EXPIRED
    ),
    c.KeysSold: c.KeysSold(offer_id=OFFER, order_id=ORDER, key_ids=KEYS),
    c.KeysBlocked: c.KeysBlocked(
        offer_id=OFFER, key_ids=["k-0100"], reason=c.BlockReason.NEAR_EXPIRY
    ),
    c.KeysVoided: c.KeysVoided(
        offer_id=OFFER, key_ids=KEYS, reason=c.VoidReason.CHARGEBACK, order_id=ORDER
    ),
    c.ReplacementKeysAllocated: c.ReplacementKeysAllocated(
        offer_id=OFFER,
        order_id=ORDER,
        ticket_id=TICKET,
        key_ids=["k-0200"],
        replaced_key_ids=KEYS[:1],
    ),
    c.KeyReplacementFailed: c.KeyReplacementFailed(
        offer_id=OFFER,
        order_id=ORDER,
        ticket_id=TICKET,
        reason=c.ReplacementFailure.OUT_OF_STOCK,
        requested=1,
        available=0,
    ),
    c.StockChanged: c.StockChanged(offer_id=OFFER, available=496, reserved=2),
    c.PaymentInitiated: c.PaymentInitiated(
        payment_id=PAYMENT,
        order_id=ORDER,
        buyer_id=BUYER,
        seller_id=SELLER,
        amount=19_300,
        channel=c.PaymentChannel.ALIPAY,
        expires_at=NOW + timedelta(minutes=15),
    ),
    c.PaymentConfirmed: c.PaymentConfirmed(
        payment_id=PAYMENT,
        order_id=ORDER,
        buyer_id=BUYER,
        amount=19_300,
        channel=c.PaymentChannel.ALIPAY,
        channel_reference="2026030122001412345678901234",
    ),
    c.PaymentFailed: c.PaymentFailed(
        payment_id=PAYMENT,
        order_id=ORDER,
        buyer_id=BUYER,
        reason=c.PaymentFailure.RESERVATION_LOST,
        captured_amount=19_300,
    ),
    c.PaymentReversed: c.PaymentReversed(
        payment_id=PAYMENT,
        order_id=ORDER,
        buyer_id=BUYER,
        seller_id=SELLER,
        amount=19_300,
        reason=c.ReversalReason.CHARGEBACK,
        channel_reference="CB-2026-0001",
        settled=True,
    ),
    c.PaymentRefunded: c.PaymentRefunded(
        payment_id=PAYMENT,
        order_id=ORDER,
        buyer_id=BUYER,
        seller_id=SELLER,
        refund_id=REFUND,
        amount=9_650,
        source=c.RefundSource.ESCROW,
        reason=c.RefundReason.DELIVERY_FAILED,
        destination="original_channel",
    ),
    c.FundsSettled: c.FundsSettled(
        payment_id=PAYMENT,
        order_id=ORDER,
        buyer_id=BUYER,
        seller_id=SELLER,
        gross=19_300,
        platform_fee=386,
        net=18_914,
    ),
    c.DepositChanged: c.DepositChanged(
        seller_id=SELLER,
        direction="debit",
        amount=9_650,
        balance=40_350,
        minimum=50_000,
        cause=c.DepositChangeCause.REFUND_DRAWN,
        order_id=ORDER,
    ),
    c.DepositBelowMinimum: c.DepositBelowMinimum(
        seller_id=SELLER, balance=40_350, minimum=50_000, shortfall=9_650
    ),
    c.KeyDelivered: c.KeyDelivered(
        delivery_id=DELIVERY,
        order_id=ORDER,
        buyer_id=BUYER,
        offer_id=OFFER,
        seller_id=SELLER,
        key_ids=KEYS,
        channels=[c.DeliveryChannel.VAULT, c.DeliveryChannel.SMS],
        mode=c.DeliveryMode.AUTO,
    ),
    c.DeliveryFailed: c.DeliveryFailed(
        delivery_id=DELIVERY,
        order_id=ORDER,
        buyer_id=BUYER,
        offer_id=OFFER,
        seller_id=SELLER,
        reason=c.DeliveryFailure.KEY_INVALID,
        key_ids=KEYS,
        faulty_key_ids=KEYS[:1],
    ),
    c.ArrivalConfirmed: c.ArrivalConfirmed(delivery_id=DELIVERY, order_id=ORDER, buyer_id=BUYER),
    c.KeyReplaced: c.KeyReplaced(
        delivery_id=DELIVERY,
        order_id=ORDER,
        buyer_id=BUYER,
        offer_id=OFFER,
        seller_id=SELLER,
        ticket_id=TICKET,
        key_ids=["k-0200"],
        replaced_key_ids=KEYS[:1],
        channels=[c.DeliveryChannel.VAULT],
    ),
    c.TicketOpened: c.TicketOpened(
        ticket_id=TICKET,
        order_id=ORDER,
        buyer_id=BUYER,
        seller_id=SELLER,
        offer_id=OFFER,
        category=c.IssueCategory.KEY_ALREADY_USED,
        key_ids=KEYS[:1],
        within_guarantee=True,
        priority=1,
        opened_by="buyer",
        preferred_remedy=c.Remedy.REPLACEMENT,
    ),
    c.TicketEscalated: c.TicketEscalated(
        ticket_id=TICKET,
        order_id=ORDER,
        level=c.EscalationLevel.AGENT,
        reason=c.EscalationReason.RULE_INCONCLUSIVE,
    ),
    c.TicketResolved: c.TicketResolved(
        ticket_id=TICKET,
        order_id=ORDER,
        resolution=c.Resolution.REFUND_PARTIAL,
        resolved_by=OPERATOR,
        automatic=False,
    ),
    c.CompensationApproved: c.CompensationApproved(
        ticket_id=TICKET,
        order_id=ORDER,
        buyer_id=BUYER,
        seller_id=SELLER,
        amount=9_650,
        void_key_ids=KEYS[:1],
        approved_by=OPERATOR,
    ),
    c.ReplacementApproved: c.ReplacementApproved(
        ticket_id=TICKET,
        order_id=ORDER,
        buyer_id=BUYER,
        seller_id=SELLER,
        offer_id=OFFER,
        key_ids=KEYS[:1],
        approved_by=OPERATOR,
    ),
    c.SellerFlagged: c.SellerFlagged(
        seller_id=SELLER,
        reason=c.FlagReason.HIGH_CLAIM_RATE,
        severity="warning",
        window_days=30,
        orders=400,
        upheld_claims=12,
        rate_basis_points=300,
    ),
    c.SellerFlagCleared: c.SellerFlagCleared(
        seller_id=SELLER,
        reason=c.FlagReason.HIGH_CLAIM_RATE,
        window_days=30,
        orders=800,
        upheld_claims=12,
        rate_basis_points=150,
    ),
    c.ResellerApproved: c.ResellerApproved(
        reseller_id=RESELLER, user_id=USER, approved_by=OPERATOR, default_markup_bp=1000
    ),
    c.ResellerCredentialIssued: c.ResellerCredentialIssued(reseller_id=RESELLER, key_id="rk_0001"),
    c.ResellerCredentialRevoked: c.ResellerCredentialRevoked(
        reseller_id=RESELLER, key_id="rk_0001", revoked_by=OPERATOR
    ),
    c.ResellerMarkupSet: c.ResellerMarkupSet(reseller_id=RESELLER, offer_id=OFFER, markup_bp=1500),
    c.ResellerWebhookSet: c.ResellerWebhookSet(
        reseller_id=RESELLER, url="https://reseller.example/hooks/kami"
    ),
    c.ResellerOrderRequested: c.ResellerOrderRequested(
        order_id=ORDER,
        reseller_id=RESELLER,
        user_id=USER,
        offer_id=OFFER,
        quantity=2,
        unit_price=1000,
        reseller_unit_price=1150,
        total=2000,
        reseller_total=2300,
        margin=300,
        customer_ref="shop-42",
    ),
    c.ResellerOrderDelivered: c.ResellerOrderDelivered(
        order_id=ORDER, reseller_id=RESELLER, key_ids=KEYS, delivered_at=NOW
    ),
    c.ResellerOrderClosed: c.ResellerOrderClosed(
        order_id=ORDER,
        reseller_id=RESELLER,
        state=c.ResellerOrderState.REFUNDED,
        reason="delivery_failed",
        refunded_amount=2300,
    ),
}
