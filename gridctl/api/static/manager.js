// The energy manager's page: policy editor with preview, versions, KPI cards and chart, demand response.
"use strict";

(() => {
  const g = gridctl;
  const $ = (id) => document.getElementById(id);
  let site = null;
  const KPI_LABELS = {
    import_energy: "Imported", export_energy: "Exported", cost: "Cost", co2: "CO₂", peak_import: "Peak",
    pv_energy: "PV produced", self_consumption: "Self-consumption", discomfort: "Discomfort",
    plan_adherence: "Plan adherence (gap)", forecast_accuracy: "PV forecast error",
  };

  function draft() {
    try { return JSON.parse($("policy").value); } catch (error) { throw new Error("the policy is not valid JSON: " + error.message); }
  }

  async function showPolicy() {
    const current = await g.api(`/sites/${site}/policy`);
    $("policy").value = JSON.stringify(current.policy, null, 2);
    g.say("policy-version", current.version === null ? "Site defaults (no version yet)"
      : `Version ${current.version} by ${current.author}, ${new Date(current.created_at).toLocaleString()}`);
    const versions = await g.api(`/sites/${site}/policy/versions`);
    g.table($("versions"), ["version", "when", "who", "changed", "comment"], versions.reverse().map((v) => [
      v.version, new Date(v.created_at).toLocaleString(), v.author, v.changed.join(", "), v.comment,
    ]));
  }

  async function preview() {
    g.say("preview-status", "The optimiser is running…");
    try {
      const s = await g.api(`/sites/${site}/policy/preview`, { method: "POST", body: { policy: draft() } });
      const names = Object.keys(s.series).filter((n) => n === "site.import_kw" || n === "site.export_kw" ||
        n.endsWith(".power_kw")).slice(0, 6);
      g.chart($("preview-chart"), s.steps.map(g.seconds), names.map((n) => ({ label: n, values: s.series[n] })), { unit: "kW" });
      g.table($("preview-objective"), ["term", "value", "€"], Object.values(s.objective).map((t) => [
        t.name, `${g.fmt(t.value)} ${t.unit}`, { text: g.fmt(t.eur), className: "num" },
      ]));
      g.say("preview-status", `${s.status}: ${g.fmt(s.objective_eur)} € over ${s.steps.length} steps, ` +
        `${s.violations.length} violation(s). Nothing was written.`);
    } catch (error) { g.say("preview-status", error.message, true); }
  }

  async function save() {
    try {
      const v = await g.api(`/sites/${site}/policy`, { method: "POST", body: { policy: draft(), comment: $("comment").value } });
      g.say("policy-status", `Version ${v.version} is in force (changed: ${v.changed.join(", ") || "nothing"}).`);
      await showPolicy();
    } catch (error) { g.say("policy-status", error.message, true); }
  }

  async function showKpis() {
    try {
      const body = await g.api(`/sites/${site}/kpis`);
      const cards = Object.entries(body.kpis).map(([name, k]) => {
        const card = document.createElement("div");
        card.className = "kpi";
        const label = document.createElement("small");
        label.textContent = KPI_LABELS[name] || name;
        const value = document.createElement("b");
        value.textContent = k.value === null ? "—" : `${g.fmt(k.unit === "ratio" ? k.value * 100 : k.value, 1)} ${k.unit === "ratio" ? "%" : k.unit}`;
        card.append(label, value);
        if (k.note) card.title = k.note;
        return card;
      });
      $("kpis").replaceChildren(...cards);
      g.say("kpi-status", `${body.start} to ${body.end} (excluded)`);
      // One KPI query per day of the last week: daily import, export and cost.
      const end = new Date(body.end);
      const days = [...Array(7).keys()].map((i) => new Date(end.getTime() - (7 - i) * 86400e3).toISOString().slice(0, 10));
      const daily = await Promise.all(days.map((d, i) => {
        const next = new Date(Date.parse(d) + 86400e3).toISOString().slice(0, 10);
        return g.api(`/sites/${site}/kpis?start=${d}&end=${next}`);
      }));
      g.chart($("kpi-chart"), days.map((d) => Date.parse(d) / 1000), [
        { label: "imported kWh", values: daily.map((k) => k.kpis.import_energy.value), bars: true },
        { label: "exported kWh", values: daily.map((k) => k.kpis.export_energy.value), bars: true },
      ], { unit: "kWh", height: 220 });
    } catch (error) { g.say("kpi-status", error.message, true); }
  }

  async function showDemandResponse() {
    const events = await g.api(`/sites/${site}/demand-response`);
    g.table($("dr"), ["id", "from", "to", "max import", "value"], events.map((e) => [
      e.event.id, new Date(e.event.start).toLocaleString(), new Date(e.event.end).toLocaleString(),
      `${e.event.max_import_kw} kW`, `${e.event.value_eur_per_kwh} €/kWh`,
    ]));
  }

  async function addDemandResponse() {
    try {
      await g.api(`/sites/${site}/demand-response`, { method: "POST", body: {
        id: $("dr-id").value, start: new Date($("dr-start").value).toISOString(),
        end: new Date($("dr-end").value).toISOString(), max_import_kw: Number($("dr-kw").value),
        value_eur_per_kwh: Number($("dr-value").value),
      } });
      g.say("dr-status", "Announced: the site re-plans now.");
      await showDemandResponse();
    } catch (error) { g.say("dr-status", error.message, true); }
  }

  async function load() {
    const sites = await g.api("/sites");
    $("site").replaceChildren(...sites.map((s) => {
      const option = document.createElement("option");
      option.value = s.id;
      option.textContent = s.name;
      return option;
    }));
    site = $("site").value;
    await Promise.all([showPolicy(), showKpis(), showDemandResponse()]);
  }

  g.header("energy management");
  $("site").addEventListener("change", () => { site = $("site").value; load(); });
  $("preview").addEventListener("click", preview);
  $("save").addEventListener("click", save);
  $("dr-add").addEventListener("click", addDemandResponse);
  load().catch((error) => g.say("policy-status", error.message, true));
})();
