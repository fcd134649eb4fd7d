"""The seller center and the operator console in a real browser, over the
real platform: a seller imports a key file and watches the progress bar go
chunk by chunk, with the rejected lines listed; an operator approves a seller
application and redrives a dead letter. A buyer is shown the 403 page.

Each page is photographed at 390 px and 1280 px (tests/browser/screenshots/).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaProducer
from playwright.async_api import Browser, BrowserContext, Page, expect

from kami_actors import PASSWORD, sign_up, verify_real_name
from kami_local import Platform
from kami_market import funded_deposit, list_offer_with_keys, operator_of, until
from tests.browser.conftest import WIDTHS
from tests.e2e.conftest import OPERATOR_PHONE

pytestmark = pytest.mark.timeout(600)

SLOW = 60_000
SERVICES = ("identity", "catalog", "inventory", "ordering", "payment", "delivery", "aftersales")


async def shoot(page: Page, folder: Path, name: str) -> None:
    for label, width in WIDTHS.items():
        await page.set_viewport_size({"width": width, "height": 900})
        await page.screenshot(path=folder / f"{name}-{width}.png", full_page=True)
        assert (folder / f"{name}-{width}.png").stat().st_size > 0, label
    await page.set_viewport_size({"width": WIDTHS["desktop"], "height": 900})


async def logged_in(browser: Browser, web: str, phone: str) -> tuple[BrowserContext, Page]:
    context = await browser.new_context(viewport={"width": WIDTHS["desktop"], "height": 900})
    context.set_default_timeout(SLOW)
    page = await context.new_page()
    await page.goto(web + "/login")
    await page.get_by_label("手机号").fill(phone)
    await page.get_by_label("密码").fill(PASSWORD)
    await page.get_by_role("button", name="登录").click()
    await page.wait_for_url(web + "/")
    return context, page


def key_file(good: int) -> tuple[str, list[int]]:
    """`good` fresh keys with an empty line, a repeated key (of the first
    chunk, repeated in the last) and another empty line among them; the
    file's line numbers of the rejected ones."""
    keys = [f"PUBG-{uuid4().hex[:16].upper()}" for _ in range(good)]
    lines = [*keys[:600], "", *keys[600:], keys[10], ""]
    rejected = [601, len(lines) - 1, len(lines)]
    return "\n".join(lines) + "\n", rejected


async def test_a_seller_imports_keys_and_watches_the_progress_bar(
    web_platform: Platform, browser: Browser, screenshots: Path, tmp_path: Path
) -> None:
    web = web_platform.url("web")
    operator = await operator_of(web_platform, OPERATOR_PHONE)
    offer = await list_offer_with_keys(web_platform, operator, keys=0, unit_price=1_200)
    seller = offer.seller
    await funded_deposit(seller, 100_000)
    await until(
        lambda: seller.call("inventory", "GET", f"/offers/{offer.offer_id}/stock"),
        lambda r: r.status_code == 200,
        what="inventory to learn the offer",
    )
    content, rejected = key_file(1_200)
    path = tmp_path / "keys.txt"
    path.write_text(content, encoding="utf-8")
    total_lines = content.count("\n")

    context, page = await logged_in(browser, web, seller.phone)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    await page.goto(web + "/seller")
    await expect(page.get_by_test_id("offers")).to_contain_text(offer.product_id)
    await shoot(page, screenshots, "21-seller-home")

    await page.goto(web + f"/seller/offers/{offer.offer_id}")
    await expect(page.locator('[data-testid="stock"] [data-state="available"]')).to_have_text("0")
    # Record the bar each time the status line changes: one reading per chunk.
    await page.evaluate(
        """() => {
          const bar = document.querySelector('[data-testid="import-progress"]');
          const status = document.querySelector('[data-testid="import-status"]');
          window.kamiProgress = [];
          new MutationObserver(() => window.kamiProgress.push(bar.value))
            .observe(status, {childList: true, characterData: true, subtree: true});
        }"""
    )
    await page.get_by_label("文件").set_input_files(path)
    await shoot(page, screenshots, "22-import-chosen")
    await page.get_by_role("button", name="开始导入").click()
    section = page.locator("#key-import")
    await expect(section).to_have_attribute("data-state", "done", timeout=120_000)

    readings = await page.evaluate("window.kamiProgress")
    # 1 203 lines in chunks of 500: the bar stood at 500, then 1000, then the end.
    assert readings == sorted(readings), readings
    assert sorted(set(readings)) == [500, 1000, total_lines], readings
    bar = page.get_by_test_id("import-progress")
    await expect(bar).to_have_attribute("max", str(total_lines))
    status = page.get_by_test_id("import-status")
    await expect(status).to_contain_text(f"{total_lines} 行，导入 1200")
    rows = page.locator('[data-testid="import-rejections"] tbody tr')
    await expect(rows).to_have_count(3)
    assert [int(n) for n in await rows.locator("td:first-child").all_inner_texts()] == rejected
    # The repeated key went in with an earlier chunk: each chunk is its own import.
    await expect(rows.nth(1)).to_contain_text("库存中已有")
    await expect(rows.first).to_contain_text("空行")
    # The stock fragment refreshed itself when the import ended.
    await expect(page.locator('[data-testid="stock"] [data-state="available"]')).to_have_text(
        "1200", timeout=SLOW
    )
    await shoot(page, screenshots, "23-import-done")

    # The same file again: every key is a duplicate now, nothing is imported twice.
    await page.reload()
    await page.get_by_label("文件").set_input_files(path)
    await page.get_by_role("button", name="开始导入").click()
    await expect(section).to_have_attribute("data-state", "done", timeout=120_000)
    await expect(status).to_contain_text("导入 0")
    stock = await seller.call("inventory", "GET", f"/offers/{offer.offer_id}/stock")
    assert stock.json()["available"] == 1_200
    assert problems == []
    await context.close()


async def _poison(web_platform: Platform) -> None:
    """A malformed message on the offers' topic: its consumers dead-letter it."""
    producer = AIOKafkaProducer(bootstrap_servers=web_platform.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        topic = f"{web_platform.topic_prefix or 'kami'}.catalog.offer.v1"
        await producer.send_and_wait(topic, b"\x00\xff{ not json", key=b"poison-browser")
    finally:
        await producer.stop()


async def test_an_operator_approves_a_seller_and_redrives_a_dead_letter(
    web_platform: Platform, browser: Browser, screenshots: Path
) -> None:
    web = web_platform.url("web")
    operator = await operator_of(web_platform, OPERATOR_PHONE)
    shop = f"浏览器小铺{uuid4().hex[:4]}"
    applicant = await sign_up(web_platform)
    await verify_real_name(applicant)

    # A buyer is turned away from the console and the seller center, and applies.
    buyer_context, buyer_page = await logged_in(browser, web, applicant.phone)
    denied = await buyer_page.goto(web + "/ops/applications")
    assert denied is not None and denied.status == 403
    await expect(buyer_page.get_by_test_id("error-detail")).to_contain_text("运营")
    await shoot(buyer_page, screenshots, "31-console-403")
    not_yet = await buyer_page.goto(web + "/seller")
    assert not_yet is not None and not_yet.status == 403
    await expect(buyer_page.get_by_test_id("error-detail")).to_contain_text("/seller/apply")
    await buyer_page.goto(web + "/seller/apply")
    await buyer_page.get_by_label("店铺名").fill(shop)
    await buyer_page.get_by_role("button", name="提交申请").click()
    await expect(buyer_page.get_by_test_id("application-status")).to_have_attribute(
        "data-status", "pending"
    )
    await shoot(buyer_page, screenshots, "30-apply")

    context, page = await logged_in(browser, web, OPERATOR_PHONE)
    await page.goto(web + "/ops/applications")
    card = page.locator(f'[data-user-id="{applicant.user_id}"]')
    await expect(card).to_contain_text(shop)
    await shoot(page, screenshots, "32-applications")
    await card.get_by_role("button", name="通过").click()
    await page.wait_for_url(web + "/ops/applications?done=approved")
    await expect(page.get_by_text("已通过，该用户现在是卖家。")).to_be_visible()
    await expect(page.locator(f'[data-user-id="{applicant.user_id}"]')).to_have_count(0)

    # The new seller, still logged in with its buyer's token, gets in at once
    # (once payment, told by event, knows the seller too).
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        opened = await buyer_page.goto(web + "/seller")
        if opened is not None and opened.status == 200:
            break
        assert loop.time() < deadline, f"the seller center stayed shut: {opened}"
        await asyncio.sleep(1)
    await expect(buyer_page.locator("h1")).to_contain_text(shop)
    await buyer_context.close()

    await _poison(web_platform)
    letters: dict[str, list[dict[str, object]]] = {}

    async def dead_lettered() -> bool:
        for service in SERVICES:
            found = await operator.call(service, "GET", "/dead-letters")
            assert found.status_code == 200, found.text
            letters[service] = [
                letter for letter in found.json()["dead_letters"] if letter["redriven_at"] is None
            ]
        return any(letters.values())

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    while not await dead_lettered():
        assert loop.time() < deadline, "no consumer dead-lettered the poison"
        await asyncio.sleep(1)
    service = next(name for name, found in letters.items() if found)
    letter_id = str(letters[service][0]["id"])

    await page.goto(web + "/ops/dead-letters")
    queue = page.get_by_test_id(f"dlq-{service}")
    row = queue.locator(f'tr[data-letter="{letter_id}"]')
    await expect(row).to_contain_text("—")  # not redriven yet
    await shoot(page, screenshots, "33-dead-letters")
    await row.get_by_role("button", name="重投").click()
    await expect(page.get_by_test_id("redrive-report")).to_contain_text(f"{service}：重投 1 条")
    redriven = page.get_by_test_id(f"dlq-{service}").locator(f'tr[data-letter="{letter_id}"]')
    await expect(redriven.get_by_role("button", name="重投")).to_have_count(0)
    await shoot(page, screenshots, "34-redriven")

    again = await operator.call(service, "POST", "/dead-letters/redrive", json={"ids": [letter_id]})
    assert again.json()["sent"] == 0  # the page's redrive was recorded: never sent twice

    await page.goto(web + "/ops/ledger")
    await expect(page.get_by_test_id("trial-balance")).to_be_visible()
    await shoot(page, screenshots, "35-trial-balance")
    await context.close()
