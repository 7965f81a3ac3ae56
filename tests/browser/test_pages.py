"""The web pages in headless Chromium: a resident sees their chart, an operator acknowledges an alarm, a
manager previews a policy. Screenshots go to test-artifacts/browser/."""

from __future__ import annotations

import asyncio
import json

from tests.browser.conftest import Served

TIMEOUT_MS = 30_000


async def sign_in(page, served: Served, who: str) -> None:
    await page.goto(f"{served.base_url}/")
    await page.fill("#token", served.api.tokens[who])
    await page.click("button[type=submit]")


async def canvas_is_drawn(page, selector: str) -> bool:
    """True when the chart's canvas has painted pixels (not only a blank surface)."""
    return await page.eval_on_selector(selector + " canvas", """canvas => {
        const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        let painted = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) painted++;
        return painted > 1000;
    }""")


async def test_a_resident_signs_in_and_sees_the_daily_chart(page, served: Served) -> None:
    await sign_in(page, served, "resident")
    await page.wait_for_url("**/ui/resident.html", timeout=TIMEOUT_MS)
    await page.wait_for_selector("#daily-chart[data-drawn] canvas", timeout=TIMEOUT_MS)
    assert await page.get_attribute("#daily-chart", "data-drawn") == "30"
    assert await canvas_is_drawn(page, "#daily-chart")
    await page.wait_for_selector("#comparison-chart[data-drawn] canvas", timeout=TIMEOUT_MS)
    await page.wait_for_function("document.getElementById('daily-status').textContent.includes('kWh')",
                                 timeout=TIMEOUT_MS)
    assert "median" in await page.text_content("#comparison-status")

    # The consent switch opens the hourly load curve, and the decision is recorded.
    assert not await page.is_checked("#consent")
    await page.check("#consent")
    await page.wait_for_selector("#hourly-chart[data-drawn] canvas", timeout=TIMEOUT_MS)
    assert await page.get_attribute("#hourly-chart", "data-drawn") == "48"
    user = await served.api.ctx.store.user("resident")
    assert await served.api.ctx.store.has_consent(user, "zac-saint-sauveur", "a-01", "load_curve")

    async with page.expect_download(timeout=TIMEOUT_MS) as download_info:
        await page.click("#export")
    download = await download_info.value
    saved = await download.path()
    document = json.loads(await asyncio.to_thread(saved.read_text, encoding="utf-8"))
    assert document["dwellings"][0]["dwelling_id"] == "a-01" and "hourly_kwh" in document["dwellings"][0]


async def test_an_operator_acknowledges_an_alarm(page, served: Served) -> None:
    await sign_in(page, served, "operator")
    await page.wait_for_url("**/ui/operator.html", timeout=TIMEOUT_MS)
    row = page.locator("#alarms tr", has_text="street-lighting")
    await row.get_by_role("button", name="Acknowledge").click(timeout=TIMEOUT_MS)
    await row.get_by_text("by operator").wait_for(timeout=TIMEOUT_MS)
    alarm = next(a for a in served.api.runtime.alarms.active() if a.subject == "street-lighting")
    assert alarm.acknowledged_by == "operator"
    # The other alarm is still waiting for someone.
    other = page.locator("#alarms tr", has_text="heat-substation")
    assert await other.get_by_role("button", name="Acknowledge").count() == 1
    assert await page.locator("#live tr", has_text="grid-meter/power").count() == 1


async def test_a_manager_previews_a_policy(page, served: Served) -> None:
    await sign_in(page, served, "manager")
    await page.wait_for_url("**/ui/manager.html", timeout=TIMEOUT_MS)
    await page.wait_for_function("document.getElementById('policy').value.includes('weights')", timeout=TIMEOUT_MS)
    policy = json.loads(await page.input_value("#policy"))
    policy["import_limit_kw"] = 90
    policy["horizon_hours"] = 12
    await page.fill("#policy", json.dumps(policy, indent=2))
    await page.click("#preview")
    await page.wait_for_function("document.getElementById('preview-status').textContent.startsWith('optimal')",
                                 timeout=TIMEOUT_MS)
    assert await page.get_attribute("#preview-chart", "data-drawn") == "48"
    assert await canvas_is_drawn(page, "#preview-chart")
    assert "Nothing was written" in await page.text_content("#preview-status")
    assert await served.api.ctx.store.policies("zac-saint-sauveur") == []
    await page.wait_for_selector("#kpi-chart[data-drawn] canvas", timeout=TIMEOUT_MS)
