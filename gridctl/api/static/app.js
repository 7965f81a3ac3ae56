// Shared helpers of gridctl's pages: API calls over the session cookie (with its CSRF token), the page
// header, tables, a pager and uPlot charts.
"use strict";

const gridctl = (() => {
  const BASE = "/api/v1";
  const t = i18n.t;

  function cookie(name) {
    const found = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
    return found ? decodeURIComponent(found.slice(name.length + 1)) : null;
  }

  class ApiError extends Error {
    constructor(status, message, retryAfter) { super(message); this.status = status; this.retryAfter = retryAfter; }
  }

  async function request(path, options = {}) {
    const method = options.method || "GET";
    const headers = Object.assign({}, options.headers || {});
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    // Every change carries the session's CSRF token.
    if (method !== "GET" && cookie("gridctl_csrf")) headers["X-CSRF-Token"] = cookie("gridctl_csrf");
    const response = await fetch(BASE + path, {
      method, headers, credentials: "same-origin",
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
    });
    if (response.status === 401 && !options.noRedirect) {
      window.location.assign("/ui/login?next=" + encodeURIComponent(window.location.pathname));
      throw new ApiError(401, t("common.session_ended"));
    }
    if (!response.ok) {
      let message = response.status + " " + response.statusText;
      try {
        const body = await response.json();
        message = body.message || (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail));
      } catch (_) { /* not JSON */ }
      throw new ApiError(response.status, message, Number(response.headers.get("Retry-After")) || null);
    }
    return response;
  }

  async function api(path, options) {
    const response = await request(path, options);
    return response.status === 204 ? null : response.json();
  }

  async function download(path, filename) {
    const blob = await (await request(path)).blob();
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = filename;
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "className") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function say(id, text, isError = false) {
    const node = document.getElementById(id);
    node.textContent = text;
    node.classList.toggle("error", isError);
  }

  // Rows of cells; a cell is text, or {text, className}, or a DOM node. Text only: never HTML.
  function table(node, header, rows, numeric = []) {
    node.replaceChildren();
    const head = node.createTHead().insertRow();
    header.forEach((h, i) => {
      const th = el("th", { scope: "col", text: h });
      if (numeric.includes(i)) th.className = "num";
      head.appendChild(th);
    });
    const body = node.createTBody();
    for (const row of rows) {
      const tr = body.insertRow();
      row.forEach((cell, i) => {
        const td = tr.insertCell();
        if (numeric.includes(i)) td.className = "num";
        if (cell instanceof Node) td.appendChild(cell);
        else if (cell && typeof cell === "object") { td.textContent = cell.text; td.className += " " + (cell.className || ""); }
        else td.textContent = cell === null || cell === undefined ? "—" : String(cell);
      });
    }
  }

  // Previous / next buttons and "page n of m" for a list shown `size` at a time.
  function pager(node, count, size, page, onPage) {
    const pages = Math.max(1, Math.ceil(count / size));
    const current = Math.min(page, pages);
    node.replaceChildren(
      el("button", { type: "button", className: "secondary", disabled: current <= 1, text: t("common.previous"),
                     onclick: () => onPage(current - 1) }),
      el("span", { "aria-live": "polite", text: t("common.page", { page: current, pages }) }),
      el("button", { type: "button", className: "secondary", disabled: current >= pages, text: t("common.next"),
                     onclick: () => onPage(current + 1) }),
    );
    return current;
  }

  const charts = new Map();
  const COLOURS = ["#0b6e4f", "#b54708", "#1d4ed8", "#7c3aed", "#a16207", "#be123c", "#0e7490", "#4d7c0f"];

  // An x-axis tick: a day ("7 mars") at midnight or on daily charts, else the time ("06:00").
  function tick(seconds, daily) {
    const d = new Date(seconds * 1000);
    return daily || (d.getHours() === 0 && d.getMinutes() === 0) ? i18n.shortDay(d) : i18n.time(d);
  }

  // x: epoch seconds; series: [{label, values, bars, digits}]. The legend shows the values under the cursor,
  // and those of the last point with data while nobody points at the chart (never "--").
  function chart(node, x, series, options = {}) {
    if (charts.has(node)) charts.get(node).destroy();
    node.replaceChildren();
    const width = Math.max(240, Math.min(node.clientWidth || 520, window.innerWidth - 48));
    const unit = options.unit || "";
    const daily = Boolean(options.daily);
    let last = x.length - 1;
    while (last > 0 && series.every((s) => s.values[last] === null || s.values[last] === undefined)) last--;
    const at = (idx) => (idx === null || idx === undefined ? last : idx);
    const plot = new uPlot({
      width, height: options.height || 240,
      // Daily bars: x at local midnight, half a day of room on each side so the end bars are whole.
      scales: { x: daily ? { time: true, range: (_u, min, max) => [min - 43200, max + 43200] } : { time: true }, y: series.some((s) => s.bars) ? { range: (_u, min, max) => [Math.min(0, min), max * 1.05 || 1] } : {} },
      axes: [
        daily ? { incrs: [86400, 2 * 86400, 7 * 86400, 14 * 86400, 28 * 86400], values: (_u, ticks) => ticks.map((v) => tick(v, true)) }
              : { values: (_u, ticks) => ticks.map((v) => tick(v, false)) },
        { label: unit, values: (_u, ticks) => ticks.map((v) => i18n.num(v, Math.abs(v) < 10 && v % 1 ? 1 : 0)) },
      ],
      series: [{ label: options.xLabel || t("common.date"),
                 value: (_u, _v, _s, idx) => (x.length ? (daily ? i18n.shortDay(new Date(x[at(idx)] * 1000)) : i18n.dateTime(new Date(x[at(idx)] * 1000))) : "—") }]
        .concat(series.map((s, i) => ({
          label: s.label, stroke: COLOURS[i % COLOURS.length],
          fill: s.bars ? COLOURS[i % COLOURS.length] + "99" : undefined,
          width: s.bars ? 0 : 2,
          paths: s.bars ? uPlot.paths.bars({ size: [0.7, 60] }) : undefined,
          points: { show: false },
          value: (_u, _v, _s, idx) => { const v = s.values[at(idx)]; return v === null || v === undefined ? "—" : i18n.num(v, s.digits ?? 1, unit); },
        }))),
    }, [x].concat(series.map((s) => s.values)), node);
    charts.set(node, plot);
    node.dataset.drawn = String(x.length);
    return plot;
  }

  window.addEventListener("resize", () => {
    for (const [node, plot] of charts) {
      const width = Math.max(240, Math.min(node.clientWidth || 520, window.innerWidth - 48));
      plot.setSize({ width, height: plot.height });
    }
  });

  function seconds(iso) { return Date.parse(iso) / 1000; }

  // The page's header: who is signed in, the language switch, sign-out. Calls render() now and on a
  // change of language; returns the session.
  async function start(titleKey, role, render) {
    i18n.apply();
    document.title = "gridctl — " + t(titleKey);
    const session = await api("/auth/session");
    if (role && !role.includes(session.role)) { window.location.assign(session.home); return null; }
    const who = document.getElementById("who");
    const show = () => { who.textContent = `${session.name} · ${t("role." + session.role)}`; };
    show();
    const nav = document.getElementById("account");
    nav.prepend(i18n.switcher(() => { document.title = "gridctl — " + t(titleKey); show(); render(); }));
    document.getElementById("signout").addEventListener("click", async () => {
      try { await api("/auth/logout", { method: "POST", noRedirect: true }); } catch (_) { /* already ended */ }
      window.location.assign("/ui/login");
    });
    return session;
  }

  // A page for people not signed in (sign-in, activation): its words and the language switch.
  function publicPage(titleKey) {
    i18n.apply();
    const title = () => { document.title = "gridctl — " + t(titleKey); };
    title();
    document.getElementById("account").append(i18n.switcher(title));
  }

  function fail(id) { return (error) => say(id, t("common.error", { message: error.message }), true); }

  return { api, request, download, el, say, table, pager, chart, seconds, start, publicPage, fail, cookie, ApiError };
})();
