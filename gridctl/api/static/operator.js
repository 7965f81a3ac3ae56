// The operator's page: the site at a glance first (power flows, alarms, devices by health), then alarms to
// acknowledge, hands off with a confirmation, devices grouped with their points (filtered, paged), the
// schedule with asset names and units, and the write audit with units.
"use strict";

(() => {
  const g = gridctl;
  const t = i18n.t;
  const $ = (id) => document.getElementById(id);
  const PAGE_SIZE = 12;
  const OUTCOMES = ["written", "renewed", "relinquished", "override", "mismatch", "rejected", "failed"];
  let site = null;
  let state = { overview: null, alarms: [], devices: [], live: [], scopes: [], schedule: null, audit: [], page: 1 };

  const word = (prefix, value) => (i18n.has(prefix + value) ? t(prefix + value) : value);

  function value(v, unit, digits = 2) {
    if (v === null || v === undefined) return "—";
    if (typeof v === "number") return i18n.num(v, Number.isInteger(v) && Math.abs(v) >= 10 ? 0 : digits, unit);
    if (typeof v === "boolean") return v ? "1" : "0";
    return String(v);
  }

  // --- overview -------------------------------------------------------------------------------
  function flowLabel(f) {
    if (f.power_kw === null) return t("flow." + f.kind);
    if (f.kind === "grid") return t(f.power_kw >= 0 ? "flow.grid_import" : "flow.grid_export");
    if (f.kind === "battery" && f.power_kw !== 0) return t(f.power_kw > 0 ? "flow.battery_charge" : "flow.battery_discharge");
    return t("flow." + f.kind);
  }

  function renderOverview() {
    const o = state.overview;
    if (!o) return;
    $("flows").replaceChildren(...o.flows.map((f) => g.el("li", { className: "tile", "data-kind": f.kind },
      g.el("span", { className: "label", text: flowLabel(f) }),
      g.el("span", { className: "value", text: f.power_kw === null ? "—" : i18n.kw(Math.abs(f.power_kw)) }),
      f.power_kw === null ? g.el("span", { className: "note", text: t("flow.no_reading") })
        : f.missing ? g.el("span", { className: "note", text: t("flow.missing", { missing: f.missing, points: f.points }) }) : null)));
    $("alarm-summary").textContent = t("operator.alarms_summary", { active: o.active_alarms, unack: o.unacknowledged_alarms });
    $("alarm-summary").className = "summary-line" + (o.unacknowledged_alarms ? " error" : "");
    $("device-summary").replaceChildren(...Object.entries(o.devices_by_state).flatMap(([s, n], i) => [
      i ? " · " : "", g.el("span", { className: "state-" + s, text: `${n} ${word("state.", s)}` })]));
  }

  // --- alarms ---------------------------------------------------------------------------------
  function renderAlarms() {
    g.table($("alarms"), [t("col.severity"), t("col.subject"), t("col.message"), t("col.raised"), t("col.ack")],
      state.alarms.map((a) => [
        { text: word("severity.", a.severity), className: "severity-" + a.severity },
        `${a.subject} — ${word("alarm.", a.kind)}`, a.message, i18n.dateTime(a.raised_at),
        a.acknowledged_by ? t("operator.acknowledged", { who: a.acknowledged_by })
          : g.el("button", { type: "button", text: t("operator.acknowledge"), "aria-label": `${t("operator.acknowledge")} ${a.subject}`,
                             onclick: () => acknowledge(a) }),
      ]));
    g.say("alarms-status", state.alarms.length ? "" : t("operator.no_alarm"));
  }

  async function acknowledge(alarm) {
    try {
      await g.api(`/sites/${site}/alarms/acknowledge`, { method: "POST", body: { kind: alarm.kind, subject: alarm.subject } });
      await Promise.all([loadAlarms(), loadOverview()]);
    } catch (error) { g.fail("alarms-status")(error); }
  }

  // --- hands off ------------------------------------------------------------------------------
  function scopeName(scope) {
    if (scope === "site") return t("operator.whole_site");
    return scope.slice(scope.indexOf(":") + 1);
  }

  function renderHandsOff() {
    $("hands-off-intro").textContent = state.scopes.length ? t("operator.hands_off_scopes") : t("operator.hands_off_none");
    $("hands-off-scopes").replaceChildren(...state.scopes.map((scope) => g.el("li", {},
      scopeName(scope), " ",
      g.el("button", { type: "button", className: "secondary", text: t("operator.hands_on"),
                       "aria-label": `${t("operator.hands_on")} — ${scopeName(scope)}`, onclick: () => handsOn(scope) }))));
    $("site-hands-off").textContent = `${t("operator.hands_off")} — ${t("operator.whole_site")}`;
    $("site-hands-off").hidden = state.scopes.includes("site");
  }

  let pendingScope = null;
  function askHandsOff(scope) {
    pendingScope = scope;
    $("hands-off-question").textContent = t("operator.hands_off_confirm", { target: scopeName(scope) });
    $("hands-off-reason").value = "";
    $("hands-off-dialog").showModal();
    $("hands-off-reason").focus();
  }

  async function handsOff(scope, reason) {
    try {
      const body = await g.api(`/sites/${site}/hands-off`, { method: "POST", body: { scope, reason } });
      g.say("hands-off-status", t("operator.hands_off_done", { target: scopeName(scope), count: body.relinquished.length }));
      state.scopes = body.scopes;
      renderHandsOff();
      renderDevices();
      await Promise.all([loadAudit(), loadOverview()]);
    } catch (error) { g.fail("hands-off-status")(error); }
  }

  async function handsOn(scope) {
    try {
      const body = await g.api(`/sites/${site}/hands-off?scope=${encodeURIComponent(scope)}`, { method: "DELETE" });
      state.scopes = body.scopes;
      g.say("hands-off-status", t("operator.hands_on_done", { target: scopeName(scope) }));
      renderHandsOff();
      renderDevices();
    } catch (error) { g.fail("hands-off-status")(error); }
  }

  // --- devices and points ---------------------------------------------------------------------
  function renderDevices() {
    const filter = $("device-filter").value.trim().toLowerCase();
    const wanted = $("state-filter").value;
    const byDevice = new Map();
    for (const p of state.live) {
      const device = p.address.split("/")[0];
      if (!byDevice.has(device)) byDevice.set(device, []);
      byDevice.get(device).push(p);
    }
    const shown = state.devices.filter((d) => (!wanted || d.state === wanted) && (!filter || d.device_id.toLowerCase().includes(filter)
      || (byDevice.get(d.device_id) || []).some((p) => p.address.toLowerCase().includes(filter))));
    state.page = g.pager($("devices-pager"), shown.length, PAGE_SIZE, state.page, (page) => { state.page = page; renderDevices(); });
    const slice = shown.slice((state.page - 1) * PAGE_SIZE, state.page * PAGE_SIZE);
    $("devices").replaceChildren(...slice.map((d) => {
      const points = (byDevice.get(d.device_id) || []).filter((p) => !filter || d.device_id.toLowerCase().includes(filter)
        || p.address.toLowerCase().includes(filter));
      const off = state.scopes.includes("device:" + d.device_id) || state.scopes.includes("site");
      const table = g.el("table");
      g.table(table, [t("col.point"), t("col.value"), t("col.quality"), t("col.age")], points.map((p) => [
        p.address.split("/").slice(1).join("/"), value(p.value, p.unit),
        { text: word("quality.", p.quality), className: "quality-" + p.quality }, i18n.ago(p.age_wall_s),
      ]), [1]);
      return g.el("details", { "data-device": d.device_id, open: filter ? true : undefined },
        g.el("summary", {}, g.el("b", { text: d.device_id }),
          g.el("span", { className: "state-" + d.state, text: word("state.", d.state) }),
          g.el("span", { className: "muted", text: t("operator.device_line", { points: points.length, protocol: d.protocol, failures: d.consecutive_failures }) }),
          off ? g.el("span", { className: "error", text: t("operator.not_commanded") }) : null),
        g.el("div", { className: "body" },
          g.el("div", { className: "table-wrap" }, table),
          off ? null : g.el("button", { type: "button", className: "danger", text: t("operator.hands_off"),
                                        "aria-label": `${t("operator.hands_off")} — ${d.device_id}`,
                                        onclick: () => askHandsOff("device:" + d.device_id) })));
    }));
  }

  // --- schedule -------------------------------------------------------------------------------
  function seriesLabel(name, names) {
    const [asset, ...rest] = name.split(".");
    const quantity = rest.join(".");
    const who = names[asset] || asset;
    if (asset === "site") return `${t("flow.grid")} ${quantity.startsWith("import") ? "↓" : "↑"} (kW)`;
    return `${who} (kW)`;
  }

  function renderSchedule() {
    const s = state.schedule;
    if (!s) { $("schedule-chart").replaceChildren(); g.say("schedule-status", t("operator.no_schedule")); return; }
    const names = Object.keys(s.series).filter((n) => n === "site.import_kw" || n === "site.export_kw" || n.endsWith(".power_kw"))
      .sort((a, b) => Math.max(...s.series[b].map(Math.abs)) - Math.max(...s.series[a].map(Math.abs))).slice(0, 8);
    g.chart($("schedule-chart"), s.steps.map(g.seconds), names.map((n) => ({ label: seriesLabel(n, s.asset_names || {}), values: s.series[n] })),
            { unit: "kW", xLabel: t("col.time") });
    g.say("schedule-status", t("operator.schedule_status", { id: s.schedule_id, status: s.status, cost: i18n.eur(s.objective_eur),
      version: s.policy_version ?? "—", until: i18n.dateTime(s.valid_until) }));
  }

  // --- audit ----------------------------------------------------------------------------------
  function auditQuery() {
    const params = new URLSearchParams();
    if ($("audit-device").value) params.set("device", $("audit-device").value);
    if ($("audit-actor").value.trim()) params.set("actor", $("audit-actor").value.trim());
    if ($("audit-outcome").value) params.set("outcome", $("audit-outcome").value);
    return params;
  }

  function renderAudit() {
    g.table($("audit"), [t("col.time"), t("col.point"), t("col.actor"), t("col.outcome"), t("col.old"), t("col.requested"),
                         t("col.written"), t("col.reason")], state.audit.map((e) => [
      i18n.dateTime(e.ts), e.address, e.actor, word("outcome.", e.outcome), value(e.old_value, e.unit),
      value(e.requested_value, e.unit), value(e.written_value, e.unit), e.reason,
    ]), [4, 5, 6]);
    g.say("audit-status", t("operator.audit_count", { count: state.audit.length }));
  }

  // --- loading --------------------------------------------------------------------------------
  async function loadOverview() { state.overview = await g.api(`/sites/${site}/overview`); renderOverview(); }
  async function loadAlarms() { state.alarms = await g.api(`/sites/${site}/alarms`); renderAlarms(); }
  async function loadAudit() { state.audit = await g.api(`/sites/${site}/audit?${auditQuery()}`); renderAudit(); }
  async function loadDevices() {
    [state.devices, state.live] = await Promise.all([g.api(`/sites/${site}/devices`), g.api(`/sites/${site}/live`)]);
    const devices = $("audit-device");
    const chosen = devices.value;
    devices.replaceChildren(g.el("option", { value: "", text: t("operator.audit_any") }),
      ...state.devices.map((d) => g.el("option", { value: d.device_id, text: d.device_id })));
    devices.value = chosen;
    renderDevices();
  }
  async function loadHandsOff() { state.scopes = (await g.api(`/sites/${site}/hands-off`)).scopes; renderHandsOff(); }
  async function loadSchedule() {
    try { state.schedule = await g.api(`/sites/${site}/schedule`); } catch (error) { if (error.status !== 404) throw error; state.schedule = null; }
    renderSchedule();
  }

  function fillSelects() {
    const states = $("state-filter");
    const chosen = states.value;
    states.replaceChildren(g.el("option", { value: "", text: t("operator.all_states") }),
      ...["ok", "degraded", "offline"].map((s) => g.el("option", { value: s, text: t("state." + s) })));
    states.value = chosen;
    const outcomes = $("audit-outcome");
    const outcome = outcomes.value;
    outcomes.replaceChildren(g.el("option", { value: "", text: t("operator.audit_any") }),
      ...OUTCOMES.map((o) => g.el("option", { value: o, text: word("outcome.", o) })));
    outcomes.value = outcome;
  }

  async function refresh() {
    await Promise.all([loadOverview(), loadAlarms(), loadDevices(), loadHandsOff(), loadSchedule(), loadAudit()]);
  }

  function render() {
    fillSelects();
    renderOverview(); renderAlarms(); renderHandsOff(); renderDevices(); renderSchedule(); renderAudit();
    const devices = $("audit-device");
    if (devices.options.length) devices.options[0].textContent = t("operator.audit_any");
  }

  async function main() {
    await g.start("operator.title", ["operator", "admin", "manager"], render);
    fillSelects();
    const sites = await g.api("/sites");
    $("site").replaceChildren(...sites.map((s) => g.el("option", { value: s.id, text: s.name })));
    site = $("site").value;
    await refresh();
    // The live side moves: the overview, alarms and points every 30 s.
    setInterval(() => { if (!document.hidden) Promise.all([loadOverview(), loadAlarms(), loadDevices()]).catch(() => {}); }, 30_000);
  }

  $("site").addEventListener("change", () => { site = $("site").value; state.page = 1; refresh().catch(g.fail("overview-status")); });
  $("refresh").addEventListener("click", () => refresh().catch(g.fail("overview-status")));
  $("device-filter").addEventListener("input", () => { state.page = 1; renderDevices(); });
  $("state-filter").addEventListener("change", () => { state.page = 1; renderDevices(); });
  $("audit-form").addEventListener("submit", (event) => { event.preventDefault(); loadAudit().catch(g.fail("audit-status")); });
  $("audit-csv").addEventListener("click", () => {
    const params = auditQuery();
    params.set("format", "csv");
    g.download(`/sites/${site}/audit?${params}`, `${site}-journal.csv`).catch(g.fail("audit-status"));
  });
  $("site-hands-off").addEventListener("click", () => askHandsOff("site"));
  $("hands-off-cancel").addEventListener("click", () => $("hands-off-dialog").close("cancel"));
  $("hands-off-form").addEventListener("submit", (event) => {
    const reason = $("hands-off-reason").value.trim();
    if (!reason) { event.preventDefault(); $("hands-off-reason").setAttribute("aria-invalid", "true"); $("hands-off-reason").focus(); return; }
    $("hands-off-reason").removeAttribute("aria-invalid");
    handsOff(pendingScope, reason);
  });
  main().catch(g.fail("overview-status"));
})();
