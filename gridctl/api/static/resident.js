// The resident's page: daily bars, comparison, consent switch, load curve, export and erasure.
"use strict";

(() => {
  const g = gridctl;
  const $ = (id) => document.getElementById(id);
  let dwelling = null;  // "<site>/<dwelling>"

  function isoDay(date) { return date.toISOString().slice(0, 10); }

  async function showDaily() {
    // Until the resident picks dates, the server's default period (the last 30 days) is shown.
    const query = $("start").value && $("end").value ? `?start=${$("start").value}&end=${$("end").value}` : "";
    try {
      const body = await g.api(`/me/dwellings/${dwelling}/consumption${query}`);
      $("start").value = body.start;
      $("end").value = body.end;
      const x = body.buckets.map((b) => g.seconds(b.start));
      g.chart($("daily-chart"), x, [{ label: "kWh per day", values: body.buckets.map((b) => b.energy_kwh), bars: true }],
              { unit: "kWh" });
      g.say("daily-status", `${g.fmt(body.total_kwh, 1)} kWh from ${body.start} to ${body.end} (excluded)`);
    } catch (error) { g.say("daily-status", error.message, true); }
  }

  async function showComparison() {
    try {
      const body = await g.api(`/me/dwellings/${dwelling}/comparison?start=${$("start").value}&end=${$("end").value}`);
      const x = body.days.map((d) => Date.parse(d.day) / 1000);
      g.chart($("comparison-chart"), x, [
        { label: "my home (kWh)", values: body.days.map((d) => d.energy_kwh) },
        { label: "median of my building (kWh)", values: body.days.map((d) => d.median_kwh) },
      ], { unit: "kWh" });
      g.say("comparison-status",
            `${g.fmt(body.energy_kwh, 1)} kWh against a median of ${g.fmt(body.median_kwh, 1)} kWh ` +
            `(${body.dwellings_compared} dwellings of ${body.building})`);
    } catch (error) { g.say("comparison-status", error.message, true); }
  }

  async function showSummary() {
    try {
      const s = await g.api(`/me/dwellings/${dwelling}/summary`);
      const cost = s.cost_eur === null ? "cost unknown" : `${g.fmt(s.cost_eur)} €`;
      g.say("summary", `${s.month}: ${g.fmt(s.energy_kwh, 1)} kWh, ${cost} (${s.tariff} tariff)` +
            (s.note ? ` — ${s.note}` : ""));
    } catch (error) { g.say("summary", error.message, true); }
  }

  async function showConsent() {
    const states = await g.api(`/me/dwellings/${dwelling}/consents`);
    const loadCurve = states.find((s) => s.purpose === "load_curve");
    $("consent").checked = loadCurve.granted;
    await showHourly(loadCurve.granted);
  }

  async function showHourly(granted) {
    const el = $("hourly-chart");
    if (!granted) {
      el.replaceChildren();
      g.say("consent-status", "Without your consent only daily totals are shown.");
      return;
    }
    try {
      const end = new Date($("end").value);
      const start = new Date(end.getTime() - 2 * 86400e3);
      const body = await g.api(`/me/dwellings/${dwelling}/consumption?resolution=hour&start=${isoDay(start)}&end=${isoDay(end)}`);
      g.chart(el, body.buckets.map((b) => g.seconds(b.start)),
              [{ label: "kWh per hour", values: body.buckets.map((b) => b.energy_kwh) }], { unit: "kWh", height: 200 });
      g.say("consent-status", "Consent given: hourly values of the last two days.");
    } catch (error) { g.say("consent-status", error.message, true); }
  }

  async function load() {
    const me = await g.api("/me");
    const select = $("dwelling");
    select.replaceChildren(...me.dwellings.map((d) => {
      const option = document.createElement("option");
      option.value = `${d.site_id}/${d.dwelling_id}`;
      option.textContent = `${d.dwelling_id} (${d.site_id})`;
      return option;
    }));
    if (!me.dwellings.length) { g.say("daily-status", "No dwelling is linked to this account.", true); return; }
    dwelling = select.value;
    await showDaily();
    await Promise.all([showComparison(), showSummary(), showConsent()]);
  }

  g.header("my consumption");
  $("dwelling").addEventListener("change", () => { dwelling = $("dwelling").value; load(); });
  $("show").addEventListener("click", () => { showDaily(); showComparison(); });
  $("csv").addEventListener("click", () => g.download(
    `/me/dwellings/${dwelling}/consumption?start=${$("start").value}&end=${$("end").value}&format=csv`,
    `consumption-${$("start").value}-${$("end").value}.csv`).catch((e) => g.say("daily-status", e.message, true)));
  $("consent").addEventListener("change", async (event) => {
    const granted = event.target.checked;
    try {
      await g.api(`/me/dwellings/${dwelling}/consents/load_curve`, { method: "PUT", body: { granted } });
      await showHourly(granted);
    } catch (error) { g.say("consent-status", error.message, true); }
  });
  $("export").addEventListener("click", () => g.download("/me/export", "gridctl-my-data.json")
    .then(() => g.say("rights-status", "Your data was downloaded."))
    .catch((e) => g.say("rights-status", e.message, true)));
  $("erase").addEventListener("click", async () => {
    if (!window.confirm("Erase your account, consents and links to your home? This cannot be undone.")) return;
    try {
      await g.api("/me/erasure", { method: "POST" });
      g.setToken(null);
      g.say("rights-status", "Your account is erased.");
    } catch (error) { g.say("rights-status", error.message, true); }
  });
  load().catch((error) => g.say("daily-status", error.message, true));
})();
