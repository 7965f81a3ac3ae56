"""The pages in headless Chromium, as each person uses them: signed in with a password, in French.
A resident reads how they compare and withdraws consent; an operator acknowledges an alarm and switches a
device hands off; a manager changes a comfort band, compares, puts it in force and rolls back. Every page is
checked with axe-core (no serious or critical violation), by keyboard, and at 390 px for sideways scrolling;
screenshots at 1366×900 and 390×844 go to artifacts/screenshots/."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from zoneinfo import ZoneInfo

from gridctl.api.store import Purpose
from gridctl.policy import SitePolicy
from tests.browser.conftest import ARTIFACTS, PASSWORDS, Served

TIMEOUT_MS = 30_000
SITE = "zac-saint-sauveur"
VIEWPORTS = [(1366, 900), (390, 844)]


async def settle(page) -> None:
    """Wait until the page has laid out after a change of size (two animation frames)."""
    await page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


async def axe_violations(page, axe_source: str) -> list[str]:
    if not await page.evaluate("() => typeof window.axe !== 'undefined'"):
        # Evaluated over the DevTools protocol: the pages' Content-Security-Policy forbids inline scripts.
        await page.evaluate(axe_source)
    result = await page.evaluate("""async () => {
        const r = await axe.run(document, { resultTypes: ["violations"] });
        return r.violations.filter(v => v.impact === "serious" || v.impact === "critical")
            .map(v => `${v.impact} ${v.id}: ${v.help} — ${v.nodes.slice(0, 3).map(n => n.target.join(" ")).join(", ")}`);
    }""")
    return result


async def check_page(page, name: str, axe_source: str) -> None:
    """At both sizes: no serious or critical axe violation, no sideways scrolling, a screenshot."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for width, height in VIEWPORTS:
        await page.set_viewport_size({"width": width, "height": height})
        await settle(page)
        widths = await page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1], f"{name} at {width} px is {widths[0]} px wide: it scrolls sideways"
        violations = await axe_violations(page, axe_source)
        assert not violations, f"{name} at {width} px: " + "\n".join(violations)
        await page.screenshot(path=str(ARTIFACTS / f"{name}-{width}x{height}.png"), full_page=True)
    await page.set_viewport_size({"width": VIEWPORTS[0][0], "height": VIEWPORTS[0][1]})
    await settle(page)


async def every_control_takes_the_keyboard(page, name: str) -> None:
    """Tab from the top reaches every visible, enabled control of the page."""
    controls = await page.evaluate("""() => {
        const all = [...document.querySelectorAll("a[href], button, input, select, textarea, summary")];
        return all.filter(el => !el.disabled && el.checkVisibility({ visibilityProperty: true }) && el.type !== "hidden")
                  .map((el, i) => { el.dataset.kbd = String(i); return String(i); });
    }""")
    reached: set[str] = set()
    await page.evaluate("() => document.activeElement && document.activeElement.blur()")
    # A time or date field takes a Tab stop per part (hours, minutes...).
    for _ in range(3 * len(controls) + 10):
        await page.keyboard.press("Tab")
        mark = await page.evaluate("() => document.activeElement ? document.activeElement.dataset.kbd || '' : ''")
        if mark:
            reached.add(mark)
        if reached >= set(controls):
            break
    missing = set(controls) - reached
    if missing:
        names = await page.evaluate("""(ids) => ids.map(i => {
            const el = document.querySelector(`[data-kbd="${i}"]`); return el.outerHTML.slice(0, 120); })""", sorted(missing))
        raise AssertionError(f"{name}: not reachable by keyboard: {names}")


async def sign_in(page, served: Served, who: str, axe_source: str | None = None) -> None:
    await page.goto(f"{served.base_url}/")
    await page.wait_for_url("**/ui/login", timeout=TIMEOUT_MS)
    assert await page.get_attribute("html", "lang") == "fr"
    assert await page.text_content("h1") == "Connexion"
    if axe_source is not None:
        await check_page(page, "login", axe_source)
        await every_control_takes_the_keyboard(page, "login")
    await page.fill("input[name=username]", who)
    await page.fill("input[name=password]", PASSWORDS[who])
    await page.click("button[type=submit]")
    await page.wait_for_url(f"**/ui/{who}", timeout=TIMEOUT_MS)
    cookies = {c["name"]: c for c in await page.context.cookies()}
    assert cookies["gridctl_session"]["httpOnly"] and cookies["gridctl_session"]["sameSite"] == "Strict"


async def test_a_wrong_password_is_refused_in_words(page, served: Served) -> None:
    await page.goto(f"{served.base_url}/ui/login")
    await page.fill("input[name=username]", "resident")
    await page.fill("input[name=password]", "not the password")
    await page.click("button[type=submit]")
    await page.get_by_text("Nom d'utilisateur ou mot de passe incorrect.").wait_for(timeout=TIMEOUT_MS)
    assert page.url.endswith("/ui/login")


async def test_a_resident_reads_the_comparison_and_withdraws_consent(page, served: Served, axe_source: str) -> None:
    user = await served.api.ctx.store.user("resident")
    await served.api.ctx.store.record_consent(user, SITE, "a-01", Purpose.LOAD_CURVE, True, served.api.clock.now())
    await sign_in(page, served, "resident", axe_source)
    headline = page.locator("#comparison")
    await headline.get_by_text("médiane des logements de votre immeuble").wait_for(timeout=TIMEOUT_MS)
    advice = (await served.api.client.get(f"/api/v1/me/dwellings/{SITE}/a-01/advice",
                                          headers=served.api.auth("resident"))).json()
    text = await headline.text_content()
    # "31 % de moins que la médiane …" (French spacing before the sign).
    assert f"{round(abs(advice['percent_vs_median']))}\u202f%" in text or f"{round(abs(advice['percent_vs_median']))}\u00a0%" in text
    assert ("de moins" if advice["percent_vs_median"] < 0 else "de plus") in text
    detail = await page.text_content("#comparison-detail")
    assert "kWh" in detail and "," in detail  # French decimals
    assert "Heures pleines" in await page.text_content("#split-legend")
    assert "heures creuses de 22:00–06:00" in await page.text_content("#tariff")
    assert await page.locator("#advice li").count() >= 1
    # The chart opens on the days that have data, with the building's median beside them.
    await page.wait_for_selector("#daily-chart[data-drawn] canvas", timeout=TIMEOUT_MS)
    assert await page.input_value("#start") == advice["data_start"]
    assert await page.input_value("#end") == advice["data_end"]
    assert "Médiane de l'immeuble" in await page.text_content("#daily-chart .u-legend")
    assert "Time" not in await page.text_content("#daily-chart .u-legend")
    await page.wait_for_selector("#hourly-chart[data-drawn] canvas", timeout=TIMEOUT_MS)
    await check_page(page, "resident", axe_source)
    await every_control_takes_the_keyboard(page, "resident")

    # The CSV of the days shown.
    async with page.expect_download(timeout=TIMEOUT_MS) as download_info:
        await page.click("#csv")
    saved = await (await download_info.value).path()
    lines = (await asyncio.to_thread(saved.read_text, encoding="utf-8")).splitlines()
    assert lines[0] == "start,energy_kwh" and len(lines) == 1 + 15

    # Withdrawing consent: one click, said in words, recorded, and the hourly chart goes.
    assert await page.is_checked("#consent")
    await page.uncheck("#consent")
    await page.get_by_text("Consentement retiré").wait_for(timeout=TIMEOUT_MS)
    assert not await served.api.ctx.store.has_consent(user, SITE, "a-01", Purpose.LOAD_CURVE)
    assert await page.locator("#hourly-chart canvas").count() == 0

    # The same page in English, from the switch.
    await page.select_option("#lang", "en")
    await headline.get_by_text("median of your building's homes").wait_for(timeout=TIMEOUT_MS)
    assert await page.get_attribute("html", "lang") == "en"


async def test_an_operator_acknowledges_an_alarm_and_switches_a_device_hands_off(page, served: Served,
                                                                              axe_source: str) -> None:
    await sign_in(page, served, "operator")
    # The overview first: power flows now, alarms and devices by health.
    grid = page.locator("#flows li[data-kind=grid]")
    await grid.wait_for(timeout=TIMEOUT_MS)
    assert "kW" in await grid.text_content()
    assert "Réseau" in await grid.text_content()
    await page.get_by_text("2 alarme(s) active(s)").wait_for(timeout=TIMEOUT_MS)
    assert "hors ligne" in await page.text_content("#device-summary")

    row = page.locator("#alarms tr", has_text="street-lighting")
    await row.get_by_role("button", name="Acquitter").click(timeout=TIMEOUT_MS)
    await row.get_by_text("acquittée par operator").wait_for(timeout=TIMEOUT_MS)
    alarm = next(a for a in served.api.runtime.alarms.active() if a.subject == "street-lighting")
    assert alarm.acknowledged_by == "operator"

    # Devices grouped with their points, filtered and paged; ages in wall-clock words.
    await page.locator("#devices details").first.wait_for(timeout=TIMEOUT_MS)
    assert await page.locator("#devices details").count() <= 12
    assert "Page 1 sur" in await page.text_content("#devices-pager")
    await page.fill("#device-filter", "battery")
    battery = page.locator("#devices details[data-device=battery]")
    await battery.wait_for(timeout=TIMEOUT_MS)
    assert await page.locator("#devices details").count() == 1
    text = await battery.text_content()
    assert "55\u00a0%" in text and "0,00\u00a0kW" in text
    # The readings are as old as the history's last instant, where the service's clock stands: "now".
    assert "maintenant" in text

    # Hands off asks for a reason and confirmation, then relinquishes.
    await battery.get_by_role("button", name="Reprendre la main — battery").click()
    dialog = page.locator("#hands-off-dialog")
    await dialog.wait_for(state="visible", timeout=TIMEOUT_MS)
    await page.fill("#hands-off-reason", "remplacement du BMS")
    await dialog.get_by_role("button", name="Confirmer").click()
    await page.get_by_text("battery : gridctl ne commande plus").wait_for(timeout=TIMEOUT_MS)
    assert "device:battery" in served.api.runtime.hands_off_scopes()
    await page.fill("#device-filter", "")
    await check_page(page, "operator", axe_source)
    await every_control_takes_the_keyboard(page, "operator")


async def test_a_manager_changes_a_comfort_band_compares_puts_it_in_force_and_rolls_back(
        page, served: Served, axe_source: str) -> None:
    store = served.api.ctx.store
    zone = next(a for a in served.api.site.assets if a.type == "thermal_zone")
    await sign_in(page, served, "manager")
    field = page.locator(f"#zone-{zone.id}-occ-min")
    await field.wait_for(timeout=TIMEOUT_MS)
    assert float(await field.input_value()) == zone.comfort_occupied.min_temperature_c

    # Inline validation: a minimum above the maximum is said at once, next to the field.
    await field.fill("40")
    await page.get_by_text("Entre 5 et 35.").first.wait_for(timeout=TIMEOUT_MS)
    await field.fill("19.5")
    # The margin the plans keep inside the bands, next to them.
    margin = page.locator("#comfort-margin")
    assert float(await margin.input_value()) == SitePolicy().comfort_margin_k
    await margin.fill("0.3")
    await page.click("#whatif")
    await page.get_by_text("Rien n'a été écrit").wait_for(timeout=60_000)
    compare = await page.text_content("#compare")
    assert "En vigueur" in compare and "Proposée" in compare and "Coût de l'énergie" in compare and "€" in compare
    assert await store.policies(SITE) == []

    # Putting it in force needs a reason.
    await page.click("#save")
    await page.get_by_text("Indiquez le motif du changement.").wait_for(timeout=TIMEOUT_MS)
    await page.fill("#reason", "confort du matin à l'école")
    await page.click("#save")
    await page.get_by_text("Version 1 en vigueur").wait_for(timeout=60_000)
    versions = await store.policies(SITE)
    assert versions[-1].policy.comfort[zone.id].occupied.min_temperature_c == 19.5
    assert versions[-1].policy.comfort_margin_k == 0.3
    assert versions[-1].comment == "confort du matin à l'école"
    await page.locator("#versions tr", has_text="19,5").wait_for(timeout=TIMEOUT_MS)

    # KPIs per period with French thousands separators and units.
    await page.wait_for_selector("#kpis .kpi", timeout=TIMEOUT_MS)
    assert "kWh" in await page.text_content("#kpis")
    await check_page(page, "manager", axe_source)
    await every_control_takes_the_keyboard(page, "manager")

    # Rolling back to the site's defaults, after a confirmation.
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.locator("#versions tr", has_text="valeurs du site").get_by_role("button", name="Rétablir").click()
    await page.get_by_text("Valeurs du site rétablies (nouvelle version 2)").wait_for(timeout=60_000)
    versions = await store.policies(SITE)
    assert len(versions) == 2 and versions[-1].policy == SitePolicy()
    assert float(await field.input_value()) == zone.comfort_occupied.min_temperature_c

    # A demand-response event announced, then cancelled with a reason kept beside it.
    start = served.api.ctx.clock().astimezone(ZoneInfo("Europe/Paris")) + timedelta(hours=2)
    await page.fill("#dr-id", "rte-ecowatt-1")
    await page.fill("#dr-start", f"{start:%Y-%m-%dT%H:00}")
    await page.fill("#dr-end", f"{start + timedelta(hours=2):%Y-%m-%dT%H:00}")
    await page.fill("#dr-kw", "80")
    await page.fill("#dr-value", "0.3")
    await page.click("#dr-form button[type=submit]")
    row = page.locator("#dr tr", has_text="rte-ecowatt-1")
    await row.get_by_text("annoncé").wait_for(timeout=TIMEOUT_MS)
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept("alerte levée par RTE")))
    await row.get_by_role("button", name="Annuler").click()
    await row.get_by_text("alerte levée par RTE").wait_for(timeout=TIMEOUT_MS)
    (record,) = await store.demand_responses(SITE)
    assert record.cancelled_by is not None and record.cancel_reason == "alerte levée par RTE"


async def test_an_activation_link_sets_the_password_and_signs_in(page, served: Served, axe_source: str) -> None:
    from gridctl.api.store import Role
    from gridctl.history.base import utc_now

    await served.api.user("claire@lille.fr", Role.RESIDENT, [f"{SITE}/a-02"])
    user = await served.api.ctx.store.user("claire@lille.fr")
    token = await served.api.ctx.signin.new_activation(user, utc_now())
    await page.goto(f"{served.base_url}/ui/activate#token={token}")
    await page.fill("#password", "Place-du-Concert-1")
    await page.fill("#confirm", "Place-du-Concert-2")
    await page.click("button[type=submit]")
    await page.get_by_text("Les deux mots de passe ne sont pas identiques.").wait_for(timeout=TIMEOUT_MS)
    await check_page(page, "activate", axe_source)
    await page.fill("#confirm", "Place-du-Concert-1")
    await page.click("button[type=submit]")
    await page.wait_for_url("**/ui/resident", timeout=TIMEOUT_MS)
    assert await served.api.ctx.signin.authenticate("claire@lille.fr", "Place-du-Concert-1", "127.0.0.1",
                                                    utc_now(), served.api.clock.now()) is not None
