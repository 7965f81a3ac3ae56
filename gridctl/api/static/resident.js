// The resident's page: this month against the building in words, the peak/off-peak split and its cost,
// advice from their own data, daily bars from the range that has data, consent, export and erasure.
"use strict";

(() => {
  const g = gridctl;
  const t = i18n.t;
  const $ = (id) => document.getElementById(id);
  let dwelling = null;  // "<site>/<dwelling>"
  let advice = null;
  let consent = null;

  function addDays(isoDay, days) {
    const d = new Date(isoDay + "T12:00:00Z");
    d.setUTCDate(d.getUTCDate() + days);
    return d.toISOString().slice(0, 10);
  }

  function tariffName(tariff) {
    if (tariff.kind === "hp_hc") {
      return t("tariff.hp_hc", { peak: i18n.eur(tariff.peak_price_eur_per_kwh, 4), offpeak: i18n.eur(tariff.offpeak_price_eur_per_kwh, 4),
                                 windows: tariff.offpeak_windows.join(", ") });
    }
    if (tariff.kind === "base") return t("tariff.base", { price: i18n.eur(tariff.base_price_eur_per_kwh, 4) });
    return t("tariff." + tariff.kind);
  }

  function renderMonth() {
    const a = advice;
    const current = new Date().toISOString().slice(0, 7) === a.month;
    const when = current ? t("resident.this_month") : t("resident.in_month", { month: i18n.monthName(a.month) });
    if (a.percent_vs_median === null) {
      g.say("comparison", t("resident.compare_none", { reason: a.comparison_note || t("resident.no_data") }));
      $("comparison-detail").textContent = "";
    } else {
      const magnitude = i18n.pct(Math.abs(a.percent_vs_median) / 100);
      const key = Math.abs(a.percent_vs_median) < 0.5 ? "resident.compare_same"
        : a.percent_vs_median < 0 ? "resident.compare_less" : "resident.compare_more";
      g.say("comparison", t(key, { pct: magnitude, when }));
      $("comparison-detail").textContent = t("resident.compare_detail", {
        own: i18n.kwh(a.energy_kwh), median: i18n.kwh(a.median_kwh), count: a.dwellings_compared });
    }
    const legend = $("split-legend");
    legend.replaceChildren();
    const total = (a.peak_kwh || 0) + (a.offpeak_kwh || 0);
    const split = $("split");
    split.hidden = a.peak_kwh === null || !total;
    if (!split.hidden) {
      split.querySelector(".peak").style.width = `${(100 * a.peak_kwh) / total}%`;
      split.querySelector(".offpeak").style.width = `${(100 * a.offpeak_kwh) / total}%`;
      for (const [cls, label, energy, cost] of [["peak", "resident.split_peak", a.peak_kwh, a.peak_cost_eur],
                                                ["offpeak", "resident.split_offpeak", a.offpeak_kwh, a.offpeak_cost_eur]]) {
        legend.append(g.el("div", { className: cls },
          g.el("dt", {}, g.el("span", { className: "swatch " + cls, "aria-hidden": "true" }), t(label)),
          g.el("dd", { text: `${i18n.pct(energy / total)} · ` + t("resident.split_line", { energy: i18n.kwh(energy), cost: i18n.eur(cost) }) })));
      }
    }
    $("total-cost").textContent = t("resident.total_cost", { when, cost: i18n.eur(a.cost_eur) });
    $("tariff").textContent = t("resident.tariff", { name: tariffName(a.tariff) });
    const list = $("advice");
    list.replaceChildren();
    if (!a.advice.length) list.append(g.el("li", { text: t("resident.advice_none") }));
    for (const item of a.advice) {
      const fmt = item.unit === "share" ? (v) => i18n.pct(v) : item.unit === "kW" ? (v) => i18n.num(v * 1000, 0, "W") : (v) => i18n.kwh(v);
      list.append(g.el("li", { text: t("advice." + item.kind, { own: fmt(item.own), building: fmt(item.building), eur: i18n.eur(item.yearly_eur, 0) }) }));
    }
  }

  async function showDaily() {
    const start = $("start").value;
    const end = $("end").value;
    try {
      const [consumption, comparison] = await Promise.all([
        g.api(`/me/dwellings/${dwelling}/consumption?start=${start}&end=${end}`),
        g.api(`/me/dwellings/${dwelling}/comparison?start=${start}&end=${end}`).catch(() => null),
      ]);
      const x = consumption.buckets.map((b) => Date.parse(b.start.slice(0, 10) + "T00:00:00") / 1000);
      const series = [{ label: t("resident.daily_series"), values: consumption.buckets.map((b) => b.energy_kwh), bars: true }];
      if (comparison) series.push({ label: t("resident.median_series"), values: comparison.days.map((d) => d.median_kwh) });
      g.chart($("daily-chart"), x, series, { unit: "kWh", daily: true });
      const known = consumption.buckets.some((b) => b.energy_kwh !== null);
      g.say("daily-status", known ? t("resident.daily_total", { energy: i18n.kwh(consumption.total_kwh), start: i18n.day(start), end: i18n.day(end) })
        : t("resident.no_data"));
    } catch (error) { g.fail("daily-status")(error); }
  }

  function renderConsent() {
    $("consent").checked = consent.granted;
    g.say("consent-status", consent.granted ? t("resident.consent_given", { date: i18n.dateTime(consent.decided_at) })
      : consent.decided_at ? t("resident.consent_withdrawn") : t("resident.consent_never"));
  }

  async function showHourly() {
    const node = $("hourly-chart");
    if (!consent.granted) { node.replaceChildren(); delete node.dataset.drawn; return; }
    const end = $("end").value;
    const start = addDays(end, -2);
    try {
      const body = await g.api(`/me/dwellings/${dwelling}/consumption?resolution=hour&start=${start}&end=${end}`);
      g.chart(node, body.buckets.map((b) => g.seconds(b.start)),
              [{ label: t("resident.hourly_series"), values: body.buckets.map((b) => b.energy_kwh), digits: 2 }],
              { unit: "kWh", height: 200 });
    } catch (error) { g.fail("consent-status")(error); }
  }

  async function load() {
    advice = await g.api(`/me/dwellings/${dwelling}/advice`);
    // The chart opens on the last 30 days that have data.
    const end = advice.data_end || addDays(new Date().toISOString().slice(0, 10), 1);
    const earliest = advice.data_start || addDays(end, -30);
    $("end").value = end;
    $("start").value = earliest > addDays(end, -30) ? earliest : addDays(end, -30);
    renderMonth();
    const states = await g.api(`/me/dwellings/${dwelling}/consents`);
    consent = states.find((s) => s.purpose === "load_curve");
    renderConsent();
    await Promise.all([showDaily(), showHourly()]);
  }

  function render() { if (advice) { renderMonth(); renderConsent(); showDaily(); showHourly(); } }

  async function main() {
    await g.start("resident.title", ["resident"], render);
    const me = await g.api("/me");
    if (!me.dwellings.length) { g.say("comparison", t("resident.no_data"), true); return; }
    const select = $("dwelling");
    select.replaceChildren(...me.dwellings.map((d) => g.el("option", { value: `${d.site_id}/${d.dwelling_id}`,
      text: `${d.dwelling_id} (${d.building || d.site_id})` })));
    $("dwelling-label").hidden = me.dwellings.length < 2;
    dwelling = select.value;
    await load();
  }

  $("dwelling").addEventListener("change", () => { dwelling = $("dwelling").value; load().catch(g.fail("daily-status")); });
  $("range").addEventListener("submit", (event) => { event.preventDefault(); showDaily(); showHourly(); });
  $("csv").addEventListener("click", () => g.download(
    `/me/dwellings/${dwelling}/consumption?start=${$("start").value}&end=${$("end").value}&format=csv`,
    `consommation-${$("start").value}-${$("end").value}.csv`).catch(g.fail("daily-status")));
  $("consent").addEventListener("change", async (event) => {
    try {
      consent = await g.api(`/me/dwellings/${dwelling}/consents/load_curve`, { method: "PUT", body: { granted: event.target.checked } });
      renderConsent();
      await showHourly();
    } catch (error) { event.target.checked = !event.target.checked; g.fail("consent-status")(error); }
  });
  $("export").addEventListener("click", () => g.download("/me/export", "gridctl-mes-donnees.json")
    .then(() => g.say("rights-status", t("resident.exported"))).catch(g.fail("rights-status")));
  $("erase").addEventListener("click", async () => {
    if (!window.confirm(t("resident.erase_confirm"))) return;
    try {
      await g.api("/me/erasure", { method: "POST" });
      g.say("rights-status", t("resident.erased"));
      window.location.assign("/ui/login");
    } catch (error) { g.fail("rights-status")(error); }
  });
  main().catch(g.fail("comparison"));
})();
