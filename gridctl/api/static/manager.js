// The energy manager's page: the policy as a form validated as you type, a what-if of the policy in force
// against the proposed one, putting it in force with a reason, version history with differences and a
// way back, KPIs over a day, week or month, and demand-response events.
"use strict";

(() => {
  const g = gridctl;
  const t = i18n.t;
  const $ = (id) => document.getElementById(id);
  let site = null;
  let values = null;      // what the site description sets
  let current = null;     // the version in force (or the defaults)
  let versions = [];
  let lastWhatIf = null;

  // --- the form -------------------------------------------------------------------------------
  // Each number field: id, label key, the policy's value, bounds, whether empty means "the site's value".
  function numberField(id, labelKey, value, { min = 0, max = 100000, step = "any", optional = false, placeholder = "" } = {}) {
    return g.el("div", { className: "field" },
      g.el("label", { for: id, text: t(labelKey) }),
      g.el("input", { id, type: "number", inputmode: "decimal", step, min, max, value: value ?? "", "aria-describedby": id + "-error",
                      placeholder: optional ? `${t("manager.site_default")} : ${placeholder}` : undefined,
                      "data-optional": optional ? "1" : undefined, oninput: validate }),
      g.el("span", { className: "field-error", id: id + "-error", "aria-live": "polite" }));
  }

  function hours(windows) { return (windows || []).map((w) => `${w.start.slice(0, 5)}-${w.end.slice(0, 5)}`).join(", "); }

  function renderForm() {
    const p = current.policy;
    $("zones").replaceChildren(...values.zones.map((z) => {
      const c = p.comfort[z.id] || {};
      const occ = c.occupied ? [c.occupied.min_temperature_c, c.occupied.max_temperature_c] : z.occupied;
      const unocc = c.unoccupied ? [c.unoccupied.min_temperature_c, c.unoccupied.max_temperature_c] : z.unoccupied;
      const band = (kind, labelKey, pair) => g.el("div", { className: "field" },
        g.el("span", { className: "band-label", id: `zone-${z.id}-${kind}-label`, text: t(labelKey) }),
        g.el("div", { className: "band", role: "group", "aria-labelledby": `zone-${z.id}-${kind}-label` },
          g.el("label", { className: "visually-hidden", for: `zone-${z.id}-${kind}-min`, text: `${z.name} ${t(labelKey)} ${t("manager.min")}` }),
          g.el("input", { id: `zone-${z.id}-${kind}-min`, type: "number", step: "0.5", min: 5, max: 35, value: pair[0],
                          "aria-describedby": `zone-${z.id}-${kind}-error`, oninput: validate }),
          "–",
          g.el("label", { className: "visually-hidden", for: `zone-${z.id}-${kind}-max`, text: `${z.name} ${t(labelKey)} ${t("manager.max")}` }),
          g.el("input", { id: `zone-${z.id}-${kind}-max`, type: "number", step: "0.5", min: 5, max: 35, value: pair[1],
                          "aria-describedby": `zone-${z.id}-${kind}-error`, oninput: validate })),
        g.el("span", { className: "field-error", id: `zone-${z.id}-${kind}-error`, "aria-live": "polite" }));
      return g.el("div", { className: "zone", "data-zone": z.id },
        g.el("h3", { text: z.building ? `${z.name} (${z.building})` : z.name }),
        g.el("div", { className: "fields" },
          band("occ", "manager.occupied_band", occ), band("unocc", "manager.unoccupied_band", unocc),
          g.el("div", { className: "field" },
            g.el("label", { for: `zone-${z.id}-hours`, text: t("manager.occupied_hours") }),
            g.el("input", { id: `zone-${z.id}-hours`, value: c.occupied_hours ? hours(c.occupied_hours) : z.occupied_hours.join(", "),
                            "aria-describedby": `zone-${z.id}-hours-hint zone-${z.id}-hours-error`, oninput: validate }),
            g.el("span", { className: "muted", id: `zone-${z.id}-hours-hint`, text: t("manager.hours_hint") }),
            g.el("span", { className: "field-error", id: `zone-${z.id}-hours-error`, "aria-live": "polite" }))));
    }));
    if (!values.zones.length) $("zones").replaceChildren(g.el("p", { className: "muted", text: "—" }));
    $("comfort-fields").replaceChildren(...(values.zones.length
      ? [numberField("comfort-margin", "manager.comfort_margin", p.comfort_margin_k, { max: 2, step: "0.1" })] : []));
    $("ev-fields").replaceChildren(
      numberField("ev-minimum", "manager.ev_minimum", p.ev_minimum_energy_kwh, { max: 200 }),
      numberField("ev-max-power", "manager.ev_max_power", p.ev_max_power_kw, { optional: true, max: 1000,
        placeholder: values.charger_max_power_kw === null ? "—" : i18n.kw(values.charger_max_power_kw) }));
    $("limit-fields").replaceChildren(
      numberField("subscribed", "manager.subscribed", p.subscribed_power_kw, { optional: true, placeholder: i18n.kw(values.subscribed_power_kw) }),
      numberField("import-limit", "manager.import_limit", p.import_limit_kw, { optional: true, placeholder: i18n.kw(values.import_limit_kw) }),
      numberField("peak-price", "manager.peak_price", p.weights.peak_eur_per_kw, { max: 1000 }),
      numberField("carbon", "manager.carbon", p.weights.carbon_eur_per_kg, { max: 100 }));
    $("dr-participate").checked = p.demand_response_participation !== false;
    const curfew = p.public_lighting_curfew;
    const [siteStart, siteEnd] = (values.curfew || "-").split("-");
    $("lighting-set").hidden = !values.public_lighting.length;
    $("lighting-fields").replaceChildren(
      g.el("div", { className: "field" }, g.el("label", { for: "curfew-start", text: `${t("manager.curfew")} — ${t("manager.dr_start")}` }),
        g.el("input", { id: "curfew-start", type: "time", value: curfew ? curfew.start.slice(0, 5) : siteStart || "", oninput: validate })),
      g.el("div", { className: "field" }, g.el("label", { for: "curfew-end", text: `${t("manager.curfew")} — ${t("manager.dr_end")}` }),
        g.el("input", { id: "curfew-end", type: "time", value: curfew ? curfew.end.slice(0, 5) : siteEnd || "", oninput: validate })),
      numberField("curfew-level", "manager.curfew_level", p.public_lighting_curfew_level_pct, { max: 100 }));
    $("policy-version").textContent = current.version === null ? t("manager.policy_defaults")
      : t("manager.policy_version", { version: current.version, author: current.author, date: i18n.dateTime(current.created_at) });
  }

  function fieldError(id, message) {
    const input = $(id);
    const error = $(id + "-error");
    if (message) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid");
    if (error) error.textContent = message || "";
    return !message;
  }

  // A number field's value; an error is shown next to it (or returned, for the two fields of a band).
  function readNumber(id, min, max) {
    const input = $(id);
    const raw = input.value.trim();
    let message = "";
    let value = null;
    if (raw === "") {
      if (!input.dataset.optional) message = t("validation.number");
    } else {
      value = Number(raw.replace(",", "."));
      if (!Number.isFinite(value) || input.validity.badInput) message = t("validation.number");
      else if (value < min || value > max) message = t("validation.range", { min: i18n.num(min, 0), max: i18n.num(max, 0) });
      else if (input.dataset.optional && value <= 0) message = t("validation.positive");
    }
    fieldError(id, message);
    return { ok: !message, value, message };
  }

  function readHours(id) {
    const raw = $(id).value.trim();
    if (!raw) { fieldError(id, ""); return { ok: true, value: null }; }
    const windows = [];
    for (const part of raw.split(/[,;]/).map((s) => s.trim()).filter(Boolean)) {
      const match = /^(\d{1,2})[:h](\d{2})\s*[-–]\s*(\d{1,2})[:h](\d{2})$/.exec(part);
      if (!match || Number(match[1]) > 23 || Number(match[3]) > 24 || Number(match[2]) > 59 || Number(match[4]) > 59) {
        fieldError(id, t("validation.hours"));
        return { ok: false };
      }
      const pad = (h, m) => `${String(Math.min(Number(h), 23)).padStart(2, "0")}:${Number(h) === 24 ? "59" : m}`;
      windows.push({ start: pad(match[1], match[2]), end: pad(match[3], match[4]) });
    }
    fieldError(id, "");
    return { ok: true, value: windows };
  }

  // The form as a policy (null when a field is wrong; the field says why).
  function draft() {
    let ok = true;
    const take = (result) => { ok = ok && result.ok; return result.value; };
    const policy = JSON.parse(JSON.stringify(current.policy));
    policy.comfort = {};
    for (const z of values.zones) {
      const band = (kind, defaults) => {
        const lo = readNumber(`zone-${z.id}-${kind}-min`, 5, 35);
        const hi = readNumber(`zone-${z.id}-${kind}-max`, 5, 35);
        let message = lo.message || hi.message;
        if (!message && lo.value >= hi.value) {
          message = t("validation.order");
          fieldError(`zone-${z.id}-${kind}-min`, message);
        }
        $(`zone-${z.id}-${kind}-error`).textContent = message;
        ok = ok && !message;
        return lo.value === defaults[0] && hi.value === defaults[1] ? null
          : { min_temperature_c: lo.value, max_temperature_c: hi.value };
      };
      const entry = {};
      const occ = band("occ", z.occupied);
      const unocc = band("unocc", z.unoccupied);
      const windows = take(readHours(`zone-${z.id}-hours`));
      if (occ) entry.occupied = occ;
      if (unocc) entry.unoccupied = unocc;
      if (windows && hours(windows) !== z.occupied_hours.join(", ")) entry.occupied_hours = windows;
      if (Object.keys(entry).length) policy.comfort[z.id] = entry;
    }
    if (values.zones.length) policy.comfort_margin_k = take(readNumber("comfort-margin", 0, 2));
    policy.ev_minimum_energy_kwh = take(readNumber("ev-minimum", 0, 200));
    policy.ev_max_power_kw = take(readNumber("ev-max-power", 0, 1000));
    policy.subscribed_power_kw = take(readNumber("subscribed", 0, 100000));
    policy.import_limit_kw = take(readNumber("import-limit", 0, 100000));
    policy.weights.peak_eur_per_kw = take(readNumber("peak-price", 0, 1000));
    policy.weights.carbon_eur_per_kg = take(readNumber("carbon", 0, 100));
    policy.demand_response_participation = $("dr-participate").checked;
    if (values.public_lighting.length) {
      const start = $("curfew-start").value;
      const end = $("curfew-end").value;
      const same = values.curfew === `${start}-${end}`;
      policy.public_lighting_curfew = start && end && !same ? { start, end } : null;
      policy.public_lighting_curfew_level_pct = take(readNumber("curfew-level", 0, 100));
    }
    return ok ? policy : null;
  }

  function validate() { draft(); }

  // --- what-if --------------------------------------------------------------------------------
  function violationText(v) {
    const what = i18n.has("violation." + v.kind) ? t("violation." + v.kind) : v.kind.replace(/_/g, " ");
    return t("violation.line", { asset: v.asset_id, what, amount: i18n.num(v.amount, 1, v.unit),
                                 start: i18n.dateTime(v.start), end: i18n.time(v.end) });
  }

  function renderWhatIf() {
    const w = lastWhatIf;
    if (!w) { $("compare").replaceChildren(); g.say("whatif-status", t("manager.whatif_none")); return; }
    const rows = [
      ["fig.cost", "cost_eur", (v) => i18n.eur(v)], ["fig.co2", "co2_kg", (v) => i18n.num(v, 1, "kg")],
      ["fig.peak", "peak_kw", (v) => i18n.kw(v)], ["fig.discomfort", "discomfort_k_h", (v) => i18n.num(v, 1, "K·h")],
      ["fig.ev_unmet", "ev_unmet_kwh", (v) => i18n.kwh(v)],
    ].map(([label, key, fmt]) => {
      const a = w.current[key];
      const b = w.proposed[key];
      const cls = a === null || b === null || Math.abs(b - a) < 1e-6 ? "" : b < a ? "better" : "worse";
      return [t(label), { text: fmt(a), className: "num" }, { text: fmt(b), className: "num " + cls }];
    });
    const list = (side) => {
      if (!side.violations.length) return t("manager.no_violation");
      return g.el("ul", { className: "violations" }, ...side.violations.map((v) => g.el("li", { text: violationText(v) })));
    };
    rows.push([t("fig.violations"), list(w.current), list(w.proposed)]);
    g.table($("compare"), [t("col.figure"), t("col.current"), t("col.proposed")], rows);
    g.say("whatif-status", t("manager.whatif_done", { hours: i18n.num(w.horizon_hours, 0), start: i18n.dateTime(w.horizon_start) }));
  }

  async function whatIf() {
    const policy = draft();
    if (!policy) { g.say("policy-status", t("manager.invalid"), true); return; }
    g.say("policy-status", "");
    g.say("whatif-status", t("manager.whatif_running"));
    $("whatif").disabled = true;
    try {
      lastWhatIf = await g.api(`/sites/${site}/policy/what-if`, { method: "POST", body: { policy } });
      renderWhatIf();
    } catch (error) { g.fail("whatif-status")(error); } finally { $("whatif").disabled = false; }
  }

  function changedWords(paths) {
    return paths.map((p) => {
      const [head, ...rest] = p.split(".");
      const name = i18n.has("policy.field." + head) ? t("policy.field." + head) : head;
      return rest.length ? `${name} (${rest.join(".")})` : name;
    }).join(", ") || "—";
  }

  async function save(event) {
    event.preventDefault();
    const policy = draft();
    if (!policy) { g.say("policy-status", t("manager.invalid"), true); return; }
    const reason = $("reason").value.trim();
    if (!fieldError("reason", reason ? "" : t("manager.reason_needed"))) { $("reason").focus(); return; }
    try {
      const v = await g.api(`/sites/${site}/policy`, { method: "POST", body: { policy, comment: reason } });
      $("reason").value = "";
      await loadPolicy();
      g.say("policy-status", t("manager.saved", { version: v.version, changed: changedWords(v.changed) }));
    } catch (error) { g.fail("policy-status")(error); }
  }

  // --- versions -------------------------------------------------------------------------------
  function flatten(value, prefix = "", out = {}) {
    if (value && typeof value === "object" && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
    } else out[prefix] = value;
    return out;
  }
  const show = (v) => (v === null || v === undefined ? "—" : typeof v === "object" ? JSON.stringify(v) : typeof v === "number" ? i18n.num(v, Number.isInteger(v) ? 0 : 2) : String(v));

  function difference(before, after, changed) {
    const a = flatten(before || {});
    const b = flatten(after);
    const lines = Object.keys(b).filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]))
      .concat(Object.keys(a).filter((k) => !(k in b)));
    if (!before) {
      // The first version: what it set, against the site's defaults.
      return Object.keys(b).filter((k) => changed.some((c) => k === c || k.startsWith(c + ".")))
        .filter((k) => b[k] !== null).map((k) => `${k} → ${show(b[k])}`).join("\n") || changedWords(changed);
    }
    return lines.map((k) => `${k} : ${show(a[k])} → ${show(b[k])}`).join("\n") || "—";
  }

  function renderVersions() {
    const rows = versions.slice().reverse().map((v) => {
      if (!v.policy) {
        // A stored version the rules now refuse: shown in words, never offered back.
        return [v.version, i18n.dateTime(v.created_at), v.author, t("manager.version_rejected", { problem: v.problem || "" }),
                v.comment, ""];
      }
      const previous = versions.find((p) => p.version === v.version - 1 && p.policy);
      const diff = g.el("span", { className: "diff", text: difference(previous ? previous.policy : null, v.policy, v.changed) });
      diff.style.whiteSpace = "pre-line";
      const restore = v.version === current.version ? "" : g.el("button", { type: "button", className: "secondary", text: t("manager.restore"),
        "aria-label": `${t("manager.restore")} ${v.version}`, onclick: () => restoreVersion(v) });
      return [v.version, i18n.dateTime(v.created_at), v.author, diff, v.comment, restore];
    });
    if (versions.length) {
      rows.push(["—", "", "", t("manager.defaults_row"), "", g.el("button", { type: "button", className: "secondary",
        text: t("manager.restore"), "aria-label": `${t("manager.restore")} — ${t("manager.defaults_row")}`, onclick: () => restoreVersion(null) })]);
    }
    g.table($("versions"), [t("col.version"), t("col.when"), t("col.who"), t("col.changed"), t("col.comment"), ""], rows);
  }

  // Back to an earlier version (null: the site's defaults), as a new version.
  async function restoreVersion(v) {
    const name = v ? v.version : t("manager.defaults_row");
    if (!window.confirm(t("manager.restore_confirm", { version: name }))) return;
    try {
      const comment = v ? t("manager.restore_comment", { version: v.version }) : t("manager.restore_defaults_comment");
      const made = await g.api(`/sites/${site}/policy`, { method: "POST", body: { policy: v ? v.policy : {}, comment } });
      await loadPolicy();
      g.say("versions-status", v ? t("manager.restored", { version: v.version, new: made.version })
        : t("manager.restored_defaults", { new: made.version }));
    } catch (error) { g.fail("versions-status")(error); }
  }

  async function loadPolicy() {
    [current, versions] = await Promise.all([g.api(`/sites/${site}/policy`), g.api(`/sites/${site}/policy/versions`)]);
    renderForm();
    renderVersions();
  }

  // --- KPIs -----------------------------------------------------------------------------------
  function isoDay(d) { return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`; }
  function bounds() {
    const day = new Date($("kpi-day").value + "T12:00:00");
    const period = $("kpi-period").value;
    let start = new Date(day);
    let end = new Date(day);
    if (period === "day") end.setDate(end.getDate() + 1);
    else if (period === "week") { start.setDate(start.getDate() - ((start.getDay() + 6) % 7)); end = new Date(start); end.setDate(end.getDate() + 7); }
    else { start = new Date(day.getFullYear(), day.getMonth(), 1, 12); end = new Date(day.getFullYear(), day.getMonth() + 1, 1, 12); }
    return [start, end];
  }

  function kpiText(k) {
    if (k.value === null) return "—";
    if (k.unit === "ratio") return i18n.pct(k.value, 1);
    if (k.unit === "EUR") return i18n.eur(k.value);
    return i18n.num(k.value, Math.abs(k.value) >= 100 ? 0 : 1, k.unit);
  }

  let kpiBody = null;
  let kpiDaily = null;
  let buildingRows = null;
  // A KPI per zone is named "<kind>:<zone>".
  function kpiLabel(name) {
    const [kind, zone] = name.split(":");
    return i18n.has("kpi." + kind) ? t("kpi." + kind, { zone: zone || "" }) : name;
  }

  function renderKpis() {
    if (!kpiBody) return;
    $("kpis").replaceChildren(...Object.entries(kpiBody.kpis).map(([name, k]) => g.el("div", { className: "kpi", title: k.note || undefined },
      g.el("small", { text: kpiLabel(name) }), g.el("b", { text: kpiText(k) }))));
    g.say("kpi-status", t("manager.kpi_range", { start: i18n.day(kpiBody.start), end: i18n.day(kpiBody.end) }));
    if (kpiDaily) {
      g.chart($("kpi-chart"), kpiDaily.days.map((d) => Date.parse(d + "T00:00:00") / 1000), [
        { label: `${t("kpi.import_energy")} (kWh)`, values: kpiDaily.values.map((k) => k.kpis.import_energy.value), bars: true },
        { label: `${t("kpi.export_energy")} (kWh)`, values: kpiDaily.values.map((k) => k.kpis.export_energy.value), bars: true },
      ], { unit: "kWh", height: 220, daily: true });
    }
    if (buildingRows) {
      g.table($("buildings"), [t("col.building"), t("col.energy")], buildingRows.map(([b, v]) => [b, v === null ? "—" : i18n.kwh(v, 0)]), [1]);
    }
  }

  async function loadKpis() {
    const [start, end] = bounds();
    const s = isoDay(start);
    const e = isoDay(end);
    try {
      kpiBody = await g.api(`/sites/${site}/kpis?start=${s}&end=${e}`);
      const days = [];
      for (const d = new Date(start); d < end; d.setDate(d.getDate() + 1)) days.push(isoDay(d));
      // One KPI query per day for the chart; a single day has no chart.
      const perDay = days.length > 1
        ? await Promise.all(days.map((d, i) => g.api(`/sites/${site}/kpis?start=${d}&end=${days[i + 1] || e}`))) : null;
      kpiDaily = perDay ? { days, values: perDay } : null;
      if (!perDay) $("kpi-chart").replaceChildren();
      buildingRows = await Promise.all(values.buildings.map(async (b) => {
        try {
          const body = await g.api(`/open/sites/${site}/buildings/${b}/daily?start=${s}&end=${e}`);
          const known = body.days.filter((d) => d.energy_kwh !== null);
          return [b, known.length ? known.reduce((sum, d) => sum + d.energy_kwh, 0) : null];
        } catch (_) { return [b, null]; }  // too few homes to publish
      }));
      renderKpis();
    } catch (error) { g.fail("kpi-status")(error); }
  }

  // --- demand response ------------------------------------------------------------------------
  function eventState(e) {
    if (e.state === "rejected") return t("manager.dr_rejected", { problem: e.problem || "" });
    if (e.state === "cancelled") {
      return t("manager.dr_cancelled", { when: i18n.dateTime(e.cancelled_at), who: e.cancelled_by, reason: e.cancel_reason });
    }
    return t(e.state === "over" ? "manager.dr_over" : e.state === "in_progress" ? "manager.dr_running" : "manager.dr_active");
  }

  async function loadDemandResponse() {
    const events = await g.api(`/sites/${site}/demand-response`);
    g.table($("dr"), [t("manager.dr_id"), t("col.from"), t("col.to"), t("col.max_import"), t("col.value_eur"),
                      t("manager.dr_state"), ""], events.map((e) => {
      const live = e.state === "upcoming" || e.state === "in_progress";
      const cancel = live ? g.el("button", { type: "button", className: "secondary", text: t("manager.dr_cancel"),
        "aria-label": `${t("manager.dr_cancel")} ${e.event_id}`, onclick: () => cancelDemandResponse(e.event_id) }) : "";
      return [
        e.event_id, e.event ? i18n.dateTime(e.event.start) : null, e.event ? i18n.dateTime(e.event.end) : null,
        { text: e.event ? i18n.kw(e.event.max_import_kw) : "—", className: "num" },
        { text: e.event ? `${i18n.eur(e.event.value_eur_per_kwh)}/kWh` : "—", className: "num" },
        eventState(e), cancel,
      ];
    }));
  }

  async function cancelDemandResponse(id) {
    const reason = window.prompt(t("manager.dr_cancel_reason", { id }));
    if (reason === null || !reason.trim()) return;
    try {
      await g.api(`/sites/${site}/demand-response/${encodeURIComponent(id)}?reason=${encodeURIComponent(reason.trim())}`,
                  { method: "DELETE" });
      g.say("dr-status", t("manager.dr_cancelled_now", { id }));
      await loadDemandResponse();
    } catch (error) { g.fail("dr-status")(error); }
  }

  async function addDemandResponse(event) {
    event.preventDefault();
    if (!$("dr-form").reportValidity()) return;
    try {
      await g.api(`/sites/${site}/demand-response`, { method: "POST", body: {
        id: $("dr-id").value.trim(), start: new Date($("dr-start").value).toISOString(), end: new Date($("dr-end").value).toISOString(),
        max_import_kw: Number($("dr-kw").value), value_eur_per_kwh: Number($("dr-value").value),
      } });
      g.say("dr-status", t("manager.dr_added"));
      await loadDemandResponse();
    } catch (error) { g.fail("dr-status")(error); }
  }

  // --- page -----------------------------------------------------------------------------------
  function fillPeriods() {
    const select = $("kpi-period");
    const chosen = select.value || "week";
    select.replaceChildren(...["day", "week", "month"].map((p) => g.el("option", { value: p, text: t("period." + p) })));
    select.value = chosen;
  }

  async function load() {
    values = await g.api(`/sites/${site}/policy/site-values`);
    // KPIs open on the week of the service's latest day (its clock, which a simulation moves).
    const latest = await g.api(`/sites/${site}/kpis`);
    const last = new Date(latest.end + "T12:00:00");
    last.setDate(last.getDate() - 1);
    $("kpi-day").value = isoDay(last);
    lastWhatIf = null;
    renderWhatIf();
    await Promise.all([loadPolicy(), loadKpis(), loadDemandResponse()]);
  }

  function render() {
    fillPeriods();
    if (current) { renderForm(); renderVersions(); }
    renderWhatIf();
    renderKpis();
  }

  async function main() {
    await g.start("manager.title", ["manager", "admin"], render);
    fillPeriods();
    const sites = await g.api("/sites");
    $("site").replaceChildren(...sites.map((s) => g.el("option", { value: s.id, text: s.name })));
    site = $("site").value;
    await load();
  }

  $("site").addEventListener("change", () => { site = $("site").value; load().catch(g.fail("policy-status")); });
  $("whatif").addEventListener("click", whatIf);
  $("policy-form").addEventListener("submit", save);
  $("dr-participate").addEventListener("change", validate);
  $("kpi-form").addEventListener("submit", (event) => { event.preventDefault(); loadKpis(); });
  $("dr-form").addEventListener("submit", addDemandResponse);
  main().catch(g.fail("policy-status"));
})();
