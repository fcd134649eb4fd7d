"""A buyer's journey in a real browser, over the real platform: register by
phone code, verify the real name, search in Chinese, compare sellers, buy,
watch the order reach DELIVERED without reloading, reveal, copy and export
the key, confirm arrival; a second buyer gets a fast refund (极速退款)
inside the guarantee window.

Each page is photographed at 390 px and 1280 px (tests/browser/screenshots/).
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import pytest
from playwright.async_api import Browser, Page, expect

from kami_actors import PASSWORD, Person, _last_code, next_phone, resident_id, sign_up
from kami_local import Platform
from kami_market import PAYMENT_PASSWORD, funded_deposit, list_offer_with_keys, operator_of
from tests.browser.conftest import WIDTHS
from tests.e2e.conftest import OPERATOR_PHONE

pytestmark = pytest.mark.timeout(600)

# Generous: two cores shared by every service and the browser.
SLOW = 60_000


@dataclass
class Market:
    product_id: str
    product_name: str
    cheap_offer: str
    cheap_keys: list[str]
    faulty_offer: str


def downloaded(path: Path | str) -> str:
    return Path(path).read_text(encoding="utf-8")


async def shoot(page: Page, folder: Path, name: str) -> None:
    """The page as it is, at each width, whole."""
    for label, width in WIDTHS.items():
        await page.set_viewport_size({"width": width, "height": 900})
        await page.screenshot(path=folder / f"{name}-{width}.png", full_page=True)
        assert (folder / f"{name}-{width}.png").stat().st_size > 0, label
    await page.set_viewport_size({"width": WIDTHS["desktop"], "height": 900})


async def category(operator: Person, name: str, parent: str | None = None) -> str:
    slug = f"b{uuid4().hex[:8]}"
    created = await operator.call(
        "catalog", "POST", "/categories", json={"slug": slug, "name": name, "parent_id": parent}
    )
    assert created.status_code == 201, created.text
    return slug


@pytest.fixture(scope="module")
async def market(web_platform: Platform) -> Market:
    """A category tree, one product, two sellers: the cheaper one's keys plain
    (the issuer cannot tell), the dearer one's marked INVALID for the issuer."""
    operator = await operator_of(web_platform, OPERATOR_PHONE)
    games = await category(operator, "游戏娱乐")
    mobile_games = await category(operator, "手游点卡", games)
    await category(operator, "生活服务")
    await category(operator, "教育课程")
    name = f"王者荣耀 点券 60元 {uuid4().hex[:4]}"
    published = await operator.call(
        "catalog",
        "POST",
        "/products",
        json={
            "name": name,
            "category_id": mobile_games,
            "kind": "game_points",
            "delivery_mode": "auto",
            "face_value": 600,
            "brand": "腾讯",
            "scope": "全区全服",
            "validity_days": 365,
            "usage_rules": "每个账号每日限兑 5 次",
            "tutorial": "打开游戏 → 商城 → 点券兑换 → 输入卡密",
        },
    )
    assert published.status_code == 201, published.text
    product_id = published.json()["product_id"]
    cheap_keys = [f"HOK-{uuid4().hex[:12].upper()}" for _ in range(2)]
    cheap = await list_offer_with_keys(
        web_platform, operator, product_id=product_id, unit_price=560, secrets=cheap_keys
    )
    faulty = await list_offer_with_keys(
        web_platform,
        operator,
        product_id=product_id,
        unit_price=590,
        secrets=[f"HOK-INVALID-{uuid4().hex[:10].upper()}" for _ in range(2)],
    )
    for offer in (cheap, faulty):
        await funded_deposit(offer.seller, 200_000)
    return Market(product_id, name, cheap.offer_id, cheap_keys, faulty.offer_id)


async def buy_through_the_gateway(page: Page, web: str, offer_id: str) -> str:
    """On the product page: buy one from `offer_id`; returns the order's path
    once its page shows the reservation (payment not started)."""
    offer = page.locator(f'[data-testid="offer"][data-offer-id="{offer_id}"]')
    await offer.get_by_test_id("buy").click()
    await page.wait_for_url(re.compile(r"/orders/[^/]+$"), timeout=SLOW)
    await expect(page.get_by_test_id("order-state")).to_have_attribute(
        "data-state", "RESERVED", timeout=SLOW
    )
    return page.url.removeprefix(web)


async def test_a_buyer_registers_buys_watches_delivery_and_a_second_gets_a_fast_refund(
    web_platform: Platform, market: Market, browser: Browser, screenshots: Path
) -> None:
    web = web_platform.url("web")
    context = await browser.new_context(
        viewport={"width": WIDTHS["desktop"], "height": 900}, accept_downloads=True
    )
    context.set_default_timeout(SLOW)
    page = await context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)

    # Home: the category tree, and what is on sale.
    await page.goto(web + "/")
    await expect(page.locator(".category-tree")).to_contain_text("游戏娱乐")
    await expect(page.locator(".category-tree")).to_contain_text("手游点卡")
    await expect(page.get_by_text("热门推荐")).to_be_visible()
    await shoot(page, screenshots, "01-home")

    # Register with the code the SMS carried, then verify the real name.
    phone = next_phone()
    await page.get_by_role("link", name="注册").click()
    await page.get_by_label("手机号").fill(phone)
    await page.get_by_role("button", name="获取验证码").click()
    await expect(page.get_by_test_id("code-sent")).to_be_visible()
    await page.get_by_label("短信验证码").fill(await _last_code(web_platform, phone))
    await page.get_by_label("密码").fill(PASSWORD)
    await shoot(page, screenshots, "02-register")
    await page.get_by_role("button", name="注册并登录").click()
    await page.wait_for_url(web + "/me")
    await expect(page.get_by_test_id("tier")).to_have_text("手机认证 L0")
    await expect(page.get_by_test_id("tiers")).to_contain_text("¥5000.00")
    await page.get_by_label("真实姓名").fill("李雷")
    await page.get_by_label("身份证号").fill(resident_id())
    await page.get_by_role("button", name="提交认证").click()
    await expect(page.get_by_test_id("tier")).to_have_text("实名认证 L1")
    await expect(page.locator("tr.current")).to_contain_text("¥5000.00")
    await shoot(page, screenshots, "03-verified")

    # Search in Chinese: face value, sellers, the lowest price.
    await page.get_by_role("searchbox").first.fill("王者荣耀 点券")
    await page.get_by_role("button", name="搜索").first.click()
    card = page.get_by_test_id("product-card").filter(has_text=market.product_name)
    await expect(card).to_contain_text("面值 ¥6.00")
    await expect(card.get_by_test_id("seller-count")).to_have_text("2 家在售")
    await expect(card.get_by_test_id("min-price")).to_contain_text("¥5.60")
    await shoot(page, screenshots, "04-search")

    # Compare the two sellers; the cheaper is the best value.
    await card.click()
    await expect(page.get_by_test_id("product-name")).to_have_text(market.product_name)
    offers = page.get_by_test_id("offer")
    await expect(offers).to_have_count(2)
    await expect(offers.first.get_by_test_id("offer-price")).to_have_text("¥5.60")
    await expect(offers.first).to_contain_text("最划算")
    await expect(offers.nth(1).get_by_test_id("offer-price")).to_have_text("¥5.90")
    await expect(page.get_by_text("打开游戏 → 商城")).to_be_visible()
    await shoot(page, screenshots, "05-product")

    # Buy: the reservation with its payment deadline counting down.
    order_path = await buy_through_the_gateway(page, web, market.cheap_offer)
    countdown = page.get_by_test_id("countdown")
    await expect(countdown).to_have_text(re.compile(r"^\d{1,2}:\d{2}(:\d{2})?$"))
    first_reading = await countdown.inner_text()
    await expect(countdown).not_to_have_text(first_reading, timeout=5_000)
    await shoot(page, screenshots, "06-reserved")

    # Pay on another tab (as on a phone); this page is never reloaded.
    await page.evaluate("window.kamiNotReloaded = true")
    phone_tab = await context.new_page()
    await phone_tab.goto(web + order_path)
    await phone_tab.get_by_test_id("pay-alipay").click()
    await expect(phone_tab.get_by_test_id("gateway-pay")).to_be_visible()
    await shoot(phone_tab, screenshots, "07-gateway")
    await phone_tab.get_by_test_id("gateway-pay").click()
    await phone_tab.close()

    await expect(page.get_by_test_id("order-state")).to_have_attribute(
        "data-state", "DELIVERED", timeout=90_000
    )
    assert await page.evaluate("window.kamiNotReloaded") is True
    await expect(page.get_by_test_id("secret")).to_have_count(0)
    await shoot(page, screenshots, "08-delivered")

    # Reveal on an explicit action; copy; export both ways.
    await page.get_by_test_id("reveal").click()
    secret = page.get_by_test_id("secret")
    await expect(secret).to_have_count(1)
    key = (await secret.inner_text()).strip()
    assert key in market.cheap_keys
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=web)
    await page.get_by_role("button", name="复制").click()
    await expect(page.get_by_role("button", name="已复制")).to_be_visible()
    await shoot(page, screenshots, "09-revealed")

    async with page.expect_download() as csv_download:
        await page.get_by_test_id("export-csv").click()
    rows = list(csv.DictReader(io.StringIO(downloaded(await (await csv_download.value).path()))))
    assert [row["secret"] for row in rows] == [key]
    async with page.expect_download() as txt_download:
        await page.get_by_test_id("export-txt").click()
    assert downloaded(await (await txt_download.value).path()).split() == [key]

    # Confirm arrival: the order completes.
    await page.get_by_test_id("confirm-arrival").click()
    await expect(page.get_by_test_id("order-state")).to_have_attribute(
        "data-state", "COMPLETED", timeout=90_000
    )
    await page.goto(web + "/orders")
    await expect(page.get_by_test_id("orders")).to_contain_text("已完成")
    await shoot(page, screenshots, "10-my-orders")
    await page.goto(web + order_path)
    await expect(page.get_by_test_id("timeline")).to_contain_text("ArrivalConfirmed")
    await shoot(page, screenshots, "11-completed")
    await context.close()

    # A second buyer, in English on a phone, buys the key the issuer calls invalid.
    second = await sign_up(web_platform)
    other = await browser.new_context(viewport={"width": WIDTHS["mobile"], "height": 844})
    other.set_default_timeout(SLOW)
    page = await other.new_page()
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    await page.goto(web + "/login")
    await page.get_by_role("button", name="English").click()
    await expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    await page.get_by_label("Phone number").fill(second.phone)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").last.click()
    # Top the wallet up through the simulated gateway, set a payment password.
    await page.goto(web + "/me")
    await page.get_by_label("Amount (¥)").fill("10")
    await page.get_by_label("Pay with").select_option("wechat_pay")
    await page.get_by_test_id("top-up").click()
    await page.get_by_test_id("gateway-pay").click()
    await page.wait_for_url(web + "/me")
    balance = page.get_by_test_id("wallet-balance")
    for _ in range(30):
        if (await balance.inner_text()) == "¥10.00":
            break
        await page.wait_for_timeout(1000)
        await page.reload()
    await expect(balance).to_have_text("¥10.00")
    await page.get_by_label("Payment password (6 digits)").fill(PAYMENT_PASSWORD)
    await page.get_by_test_id("set-payment-password").click()
    await expect(page.get_by_test_id("set-payment-password")).to_have_text(
        "Change the payment password"
    )
    await shoot(page, screenshots, "12-wallet")

    # Buy the faulty key, pay from the wallet.
    await page.goto(web + f"/products/{market.product_id}")
    order_path = await buy_through_the_gateway(page, web, market.faulty_offer)
    await page.get_by_label("Payment password").fill(PAYMENT_PASSWORD)
    await page.get_by_test_id("pay-wallet").click()
    await page.wait_for_url(web + order_path)
    await expect(page.get_by_test_id("order-state")).to_have_attribute(
        "data-state", "DELIVERED", timeout=90_000
    )
    await expect(page.get_by_test_id("guarantee-countdown")).to_have_text(
        re.compile(r"^1?\d:\d{2}$")
    )
    await shoot(page, screenshots, "13-guarantee")
    await page.get_by_test_id("fast-refund").click()
    await page.wait_for_url(re.compile(r"/tickets/[^/]+$"))
    await expect(page.get_by_test_id("ticket-state")).to_have_attribute("data-state", "resolved")
    await expect(page.get_by_test_id("ticket-resolution")).to_contain_text("Full refund")
    await shoot(page, screenshots, "14-fast-refund")

    await page.goto(web + order_path)
    state = page.get_by_test_id("order-state")
    for _ in range(60):
        if await state.get_attribute("data-state") == "REFUNDED":
            break
        await page.wait_for_timeout(1000)
        await page.reload()
    await expect(state).to_have_attribute("data-state", "REFUNDED")
    await shoot(page, screenshots, "15-refunded")
    await other.close()

    assert not [p for p in problems if "Content Security Policy" in p or "Refused" in p], problems

    # Paid 5.90 from the 10.00 topped up, and got the 5.90 back.
    await expect_wallet(second, 10_00)


async def expect_wallet(buyer: Person, balance: int) -> None:
    await buyer.refresh()
    for _ in range(30):
        wallet = await buyer.call("payment", "GET", "/wallet")
        if wallet.json()["balance"] == balance:
            return
        await asyncio.sleep(1)
    raise AssertionError(f"wallet {wallet.json()['balance']}, expected {balance}")
