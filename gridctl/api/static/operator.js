// The operator's dashboard: alarms (acknowledge), live points, devices, hands off, schedule, write audit.
"use strict";

(() => {
  const g = gridctl;
  const $ = (id) => document.getElementById(id);
  let site = null;

  function button(label, onClick, secondary = false) {
    const b = document.createElement("button");
    b.textContent = label;
    if (secondary) b.className = "secondary";
    b.addEventListener("click", onClick);
    return b;
  }

  async function showAlarms() {
    const alarms = await g.api(`/sites/${site}/alarms`);
    g.table($("alarms"), ["severity", "kind", "subject", "message", "raised", "acknowledged"], alarms.map((a) => [
      a.severity, a.kind, a.subject, a.message, new Date(a.raised_at).toLocaleString(),
      a.acknowledged_by ? `by ${a.acknowledged_by}` : button("Acknowledge", () => acknowledge(a)),
    ]));
    g.say("alarms-status", alarms.length ? `${alarms.length} active` : "No active alarm.");
  }

  async function acknowledge(alarm) {
    try {
      await g.api(`/sites/${site}/alarms/acknowledge`, { method: "POST", body: { kind: alarm.kind, subject: alarm.subject } });
      await showAlarms();
    } catch (error) { g.say("alarms-status", error.message, true); }
  }

  let livePoints = [];
  function renderLive() {
    const filter = $("point-filter").value.trim();
    const rows = livePoints.filter((p) => !filter || p.address.includes(filter));
    g.table($("live"), ["point", "value", "unit", "quality", "age"], rows.map((p) => [
      p.address, { text: typeof p.value === "number" ? g.fmt(p.value, 3) : String(p.value), className: "num" },
      p.unit, { text: p.quality, className: "quality-" + p.quality }, `${Math.round(p.age_s)} s`,
    ]));
  }

  async function showLive() { livePoints = await g.api(`/sites/${site}/live`); renderLive(); }

  async function showDevices() {
    const devices = await g.api(`/sites/${site}/devices`);
    g.table($("devices"), ["device", "protocol", "state", "failures", "last error"], devices.map((d) => [
      d.device_id, d.protocol, { text: d.state, className: "state-" + d.state }, d.consecutive_failures, d.last_error,
    ]));
  }

  async function showHandsOff() {
    const body = await g.api(`/sites/${site}/hands-off`);
    g.table($("hands-off-scopes"), ["not commanded", ""], body.scopes.map((scope) => [
      scope, button("Hands on", async () => {
        try {
          await g.api(`/sites/${site}/hands-off?scope=${encodeURIComponent(scope)}`, { method: "DELETE" });
          await showHandsOff();
        } catch (error) { g.say("hands-off-status", error.message, true); }
      }, true),
    ]));
  }

  async function showSchedule() {
    try {
      const s = await g.api(`/sites/${site}/schedule`);
      const x = s.steps.map(g.seconds);
      const names = Object.keys(s.series).filter((n) => n.startsWith("site.") || n.endsWith(".power_kw")).slice(0, 6);
      g.chart($("schedule-chart"), x, names.map((n) => ({ label: n, values: s.series[n] })), { unit: "kW" });
      g.say("schedule-status", `${s.schedule_id}: ${s.status}, ${g.fmt(s.objective_eur)} €, policy version ${s.policy_version ?? "—"}`);
    } catch (error) { $("schedule-chart").replaceChildren(); g.say("schedule-status", error.message); }
  }

  function auditQuery() {
    const params = new URLSearchParams();
    if ($("audit-device").value) params.set("device", $("audit-device").value);
    if ($("audit-actor").value) params.set("actor", $("audit-actor").value);
    if ($("audit-outcome").value) params.set("outcome", $("audit-outcome").value);
    return params;
  }

  async function showAudit() {
    try {
      const entries = await g.api(`/sites/${site}/audit?${auditQuery()}`);
      g.table($("audit"), ["time", "point", "actor", "outcome", "old", "requested", "written", "reason"], entries.map((e) => [
        new Date(e.ts).toLocaleString(), e.address, e.actor, e.outcome, e.old_value, e.requested_value, e.written_value,
        e.reason,
      ]));
      g.say("audit-status", `${entries.length} entries`);
    } catch (error) { g.say("audit-status", error.message, true); }
  }

  async function refresh() {
    await Promise.all([showAlarms(), showLive(), showDevices(), showHandsOff(), showSchedule(), showAudit()]);
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
    await refresh();
  }

  g.header("operations");
  $("site").addEventListener("change", () => { site = $("site").value; refresh(); });
  $("refresh").addEventListener("click", refresh);
  $("point-filter").addEventListener("input", renderLive);
  $("audit-search").addEventListener("click", showAudit);
  $("audit-csv").addEventListener("click", () => {
    const params = auditQuery();
    params.set("format", "csv");
    g.download(`/sites/${site}/audit?${params}`, `${site}-audit.csv`).catch((e) => g.say("audit-status", e.message, true));
  });
  $("hands-off").addEventListener("click", async () => {
    try {
      const body = await g.api(`/sites/${site}/hands-off`, {
        method: "POST", body: { scope: $("hands-off-scope").value.trim(), reason: $("hands-off-reason").value.trim() },
      });
      g.say("hands-off-status", `relinquished: ${body.relinquished.join(", ") || "nothing held"}`);
      await Promise.all([showHandsOff(), showAudit()]);
    } catch (error) { g.say("hands-off-status", error.message, true); }
  });
  load().catch((error) => g.say("alarms-status", error.message, true));
})();
