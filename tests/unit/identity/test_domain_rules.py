"""The pure rules: phones, resident ID numbers, names, passwords, the tier table
and the User aggregate's guarded transitions."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import ValidationError

from kami_events.catalogue.identity import (
    IdentityVerified,
    KycTier,
    PhoneVerified,
    Role,
    SellerApproved,
    SuspensionReason,
    UserRegistered,
    UserSuspended,
)
from kami_identity.domain.credentials import check_password, normalise_legal_name
from kami_identity.domain.phone import Phone
from kami_identity.domain.rejections import Conflict, Forbidden, InvalidInput
from kami_identity.domain.resident_id import ResidentId, age_on, mask_name
from kami_identity.domain.tiers import TierTable, TierTerms
from kami_identity.domain.user import User
from kami_identity.settings import IdentitySettings
from tests.unit.identity.data import resident_id

TODAY = date(2026, 11, 24)
NOW = datetime(2026, 11, 24, 4, 0, tzinfo=UTC)


# Phones -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "number"),
    [
        ("13812345678", "13812345678"),
        ("+86 138-1234-5678", "13812345678"),
        ("8619912345678", "19912345678"),
    ],
)
def test_mainland_mobile_numbers_are_accepted_and_normalised(raw: str, number: str) -> None:
    assert Phone.parse(raw).number == number


@pytest.mark.parametrize(
    "raw", ["12812345678", "1381234567", "138123456789", "23812345678", "1381234567a", ""]
)
def test_other_numbers_are_rejected(raw: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        Phone.parse(raw)
    assert refused.value.code == "invalid_phone"


def test_phone_shows_only_masked() -> None:
    phone = Phone.parse("13812345678")
    assert phone.masked == "138****5678"
    assert "12345678" not in repr(phone) and "12345678" not in str(phone)


# Resident ID numbers ------------------------------------------------------


def test_a_valid_id_number_parses_with_its_birth_date() -> None:
    parsed = ResidentId.parse(resident_id("19900307"), today=TODAY)
    assert parsed.birth_date == date(1990, 3, 7)


def test_the_x_check_character_is_accepted_in_either_case() -> None:
    number = "11010519491231002X"
    assert ResidentId.parse(number.lower(), today=TODAY).number == number


def test_every_single_digit_typo_fails_the_checksum() -> None:
    valid = resident_id("19900307")
    for position in range(17):
        digit = int(valid[position])
        typo = valid[:position] + str((digit + 1) % 10) + valid[position + 1 :]
        with pytest.raises(InvalidInput) as refused:
            ResidentId.parse(typo, today=TODAY)
        # A typo in the date part may also make the date impossible.
        assert refused.value.code in {"id_checksum_mismatch", "invalid_birth_date"}


def test_a_wrong_check_character_is_named_as_such() -> None:
    valid = resident_id("19900307")
    wrong = valid[:17] + ("0" if valid[17] != "0" else "1")
    with pytest.raises(InvalidInput) as refused:
        ResidentId.parse(wrong, today=TODAY)
    assert refused.value.code == "id_checksum_mismatch"


@pytest.mark.parametrize(
    "raw",
    ["11010119900307123", "1101011990030712345", "11010119900307123Y", "A10101199003071234"],
)
def test_malformed_numbers_are_rejected(raw: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        ResidentId.parse(raw, today=TODAY)
    assert refused.value.code == "invalid_id_number"


def test_an_unknown_region_is_rejected() -> None:
    with pytest.raises(InvalidInput) as refused:
        ResidentId.parse(resident_id(region="990101"), today=TODAY)
    assert refused.value.code == "invalid_id_number"


@pytest.mark.parametrize(
    "birth",
    ["19900230", "19990229", "19901301", "19900001", "19900100", "18991231", "20270101"],
)
def test_impossible_or_implausible_birth_dates_are_rejected(birth: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        ResidentId.parse(resident_id(birth), today=TODAY)
    assert refused.value.code == "invalid_birth_date"


def test_a_leap_day_birth_is_a_real_date() -> None:
    assert ResidentId.parse(resident_id("20000229"), today=TODAY).birth_date == date(2000, 2, 29)


def test_adults_only_counting_from_the_18th_birthday() -> None:
    assert ResidentId.parse(resident_id("20081124"), today=TODAY)  # 18 today
    with pytest.raises(InvalidInput) as refused:
        ResidentId.parse(resident_id("20081125"), today=TODAY)  # 18 tomorrow
    assert refused.value.code == "under_age"


def test_born_on_a_leap_day_comes_of_age_on_first_of_march() -> None:
    birth = date(2008, 2, 29)
    assert age_on(birth, date(2026, 2, 28)) == 17
    assert age_on(birth, date(2026, 3, 1)) == 18


def test_id_numbers_are_masked_and_never_shown_whole() -> None:
    number = resident_id("19900307", sequence="123")
    parsed = ResidentId.parse(number, today=TODAY)
    assert parsed.masked == f"1101**********{number[-4:]}"
    assert len(parsed.masked) == 18
    assert number not in repr(parsed) and number not in str(parsed)


def test_names_are_masked_after_the_family_name() -> None:
    assert mask_name("张三丰") == "张**"


@pytest.mark.parametrize("name", ["张三", "阿依古丽·买买提", "Zhang San"])
def test_legal_names_as_on_the_id_card(name: str) -> None:
    assert normalise_legal_name(f"  {name} ") == name


@pytest.mark.parametrize("name", ["张", "张三3", "<script>", "x" * 41])
def test_other_names_are_rejected(name: str) -> None:
    with pytest.raises(InvalidInput):
        normalise_legal_name(name)


@pytest.mark.parametrize("password", ["short1", "onlyletters", "1234567890", "a1" * 65])
def test_weak_passwords_are_rejected(password: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_password(password)
    assert refused.value.code == "weak_password"


# The tier table -----------------------------------------------------------


def test_default_tiers_grant_more_at_each_level() -> None:
    table = TierTable()
    limits = [table.terms(t).daily_payment_limit for t in KycTier]
    assert limits == [50_000, 500_000, 5_000_000]
    assert [table.terms(t).delivery_priority for t in KycTier] == [0, 1, 2]


def test_a_table_where_a_higher_tier_grants_less_is_refused() -> None:
    low = TierTerms(daily_payment_limit=100, delivery_priority=0, aftersales_priority=0)
    with pytest.raises(ValidationError, match="grants less"):
        TierTable(
            phone=TierTerms(daily_payment_limit=1_000, delivery_priority=0, aftersales_priority=0),
            real_name=low,
        )


def test_the_tier_table_is_configured_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "KAMI_IDENTITY_TIERS",
        '{"phone": {"daily_payment_limit": 10000, "delivery_priority": 0,'
        ' "aftersales_priority": 1}}',
    )
    monkeypatch.setenv("KAMI_IDENTITY_OPERATOR_PHONES", "13800000001, +86 139-0000-0002")
    settings = IdentitySettings(
        identity_signing_key="k", identity_id_number_key="k", identity_fingerprint_key="k"
    )
    assert settings.identity_tiers.phone.daily_payment_limit == 10_000
    assert settings.identity_tiers.phone.aftersales_priority == 1
    assert settings.identity_tiers.advanced.daily_payment_limit == 5_000_000
    assert settings.identity_operator_phones == ["13800000001", "13900000002"]


def test_the_events_carry_the_configured_terms() -> None:
    table = TierTable(
        phone=TierTerms(daily_payment_limit=123, delivery_priority=0, aftersales_priority=0)
    )
    user = User.register("u1", Phone.parse("13812345678"), (), table)
    granted = user.pending_events[-1]
    assert isinstance(granted, IdentityVerified)
    assert (granted.tier, granted.previous_tier, granted.daily_payment_limit) == (
        KycTier.PHONE,
        None,
        123,
    )


# The User aggregate -------------------------------------------------------


def registered_user(*staff: Role) -> User:
    user = User.register("u1", Phone.parse("13812345678"), staff, TierTable())
    user.mark_committed()
    return user


def test_registration_is_one_commit_of_three_events_without_the_full_number() -> None:
    user = User.register("u1", Phone.parse("13812345678"), (), TierTable())
    registered, verified, tier = user.pending_events
    assert isinstance(registered, UserRegistered) and registered.roles == [Role.BUYER]
    assert isinstance(verified, PhoneVerified) and verified.phone_masked == "138****5678"
    assert isinstance(tier, IdentityVerified) and tier.tier is KycTier.PHONE
    assert all("12345678" not in e.model_dump_json() for e in user.pending_events)


def test_staff_phones_register_with_their_role_besides_buyer() -> None:
    assert registered_user(Role.OPERATOR).roles == {Role.BUYER, Role.OPERATOR}


def test_tiers_are_climbed_in_order() -> None:
    user = registered_user()
    with pytest.raises(Conflict) as refused:
        user.verify_advanced(TierTable(), NOW)
    assert refused.value.code == "real_name_required"
    user.verify_real_name(TierTable(), NOW)
    with pytest.raises(Conflict) as again:
        user.verify_real_name(TierTable(), NOW)
    assert again.value.code == "already_verified"
    user.verify_advanced(TierTable(), NOW)
    assert user.tier is KycTier.ADVANCED
    last = user.pending_events[-1]
    assert isinstance(last, IdentityVerified) and last.previous_tier is KycTier.REAL_NAME


def test_a_seller_must_be_real_name_verified_and_is_approved_once() -> None:
    user = registered_user()
    with pytest.raises(Conflict) as refused:
        user.approve_seller("Shop", "op", NOW)
    assert refused.value.code == "real_name_required"
    user.verify_real_name(TierTable(), NOW)
    user.approve_seller("  Card Shop ", "op", NOW, category="games")
    approved = user.pending_events[-1]
    assert isinstance(approved, SellerApproved) and approved.shop_name == "Card Shop"
    # The category the operator chose travels to payment (its deposit minimum).
    assert approved.category == "games" and user.seller_category == "games"
    assert Role.SELLER in user.roles
    with pytest.raises(Conflict, match="already"):
        user.approve_seller("Shop", "op", NOW)


def test_a_suspended_user_can_do_nothing_until_the_suspension_ends() -> None:
    user = registered_user()
    until = NOW + timedelta(days=1)
    user.suspend(SuspensionReason.FRAUD_SUSPECTED, by="op", now=NOW, until=until)
    assert isinstance(user.pending_events[-1], UserSuspended)
    with pytest.raises(Forbidden) as refused:
        user.verify_real_name(TierTable(), NOW)
    assert refused.value.code == "account_suspended"
    with pytest.raises(Conflict, match="already suspended"):
        user.suspend(SuspensionReason.TERMS_VIOLATION, by="op", now=NOW)
    with pytest.raises(Conflict) as not_seller:
        user.approve_seller("Shop", "op", NOW)
    assert not_seller.value.code == "user_suspended"
    assert not user.is_suspended(until)
    user.verify_real_name(TierTable(), until)


def test_suspension_guards() -> None:
    user = registered_user()
    with pytest.raises(Conflict) as self_suspension:
        user.suspend(SuspensionReason.USER_REQUEST, by="u1", now=NOW)
    assert self_suspension.value.code == "cannot_suspend_self"
    with pytest.raises(InvalidInput) as past:
        user.suspend(SuspensionReason.USER_REQUEST, by="op", now=NOW, until=NOW)
    assert past.value.code == "invalid_until"


def test_a_user_rebuilt_from_its_events_has_the_same_state() -> None:
    user = registered_user()
    user.verify_real_name(TierTable(), NOW)
    user.approve_seller("Shop", "op", NOW)
    user.suspend(SuspensionReason.SELLER_MISCONDUCT, by="op", now=NOW)
    history = [
        *User.register("u1", Phone.parse("13812345678"), (), TierTable()).pending_events,
        *user.pending_events,
    ]
    rebuilt = User.rehydrate("u1", history)
    assert (rebuilt.roles, rebuilt.tier, rebuilt.shop_name, rebuilt.version) == (
        frozenset({Role.BUYER, Role.SELLER}),
        KycTier.REAL_NAME,
        "Shop",
        6,
    )
    assert rebuilt.is_suspended(NOW)
