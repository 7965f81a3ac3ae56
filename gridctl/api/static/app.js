// Shared helpers of gridctl's pages: the token, API calls, tables and uPlot charts.
"use strict";

const gridctl = (() => {
  const KEY = "gridctl.token";
  const BASE = new URL("../api/v1", document.baseURI).pathname;

  function token() { return sessionStorage.getItem(KEY); }
  function setToken(value) { value ? sessionStorage.setItem(KEY, value) : sessionStorage.removeItem(KEY); }

  async function request(path, options = {}) {
    const headers = Object.assign({}, options.headers || {});
    if (token()) headers["Authorization"] = "Bearer " + token();
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(BASE + path, {
      method: options.method || "GET", headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
    });
    if (response.status === 401) {
      setToken(null);
      throw new Error("the token is unknown, expired or revoked: sign in again");
    }
    if (!response.ok) {
      let message = response.status + " " + response.statusText;
      try {
        const body = await response.json();
        message = body.message || (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail));
      } catch (_) { /* not JSON */ }
      throw new Error(message);
    }
    return response;
  }

  async function api(path, options) { return (await request(path, options)).json(); }

  async function download(path, filename) {
    const blob = await (await request(path)).blob();
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = filename;
    document.body.appendChild(link);
    link.click();
    link.remove();
    URL.revokeObjectURL(link.href);
  }

  function say(id, text, isError = false) {
    const el = document.getElementById(id);
    el.textContent = text;
    el.classList.toggle("error", isError);
  }

  // Rows of cells; a cell is text, or {text, className}, or a DOM node. Text only: never HTML.
  function table(el, header, rows) {
    el.replaceChildren();
    const head = el.createTHead().insertRow();
    for (const h of header) { const th = document.createElement("th"); th.textContent = h; head.appendChild(th); }
    const body = el.createTBody();
    for (const row of rows) {
      const tr = body.insertRow();
      for (const cell of row) {
        const td = tr.insertCell();
        if (cell instanceof Node) td.appendChild(cell);
        else if (cell && typeof cell === "object") { td.textContent = cell.text; td.className = cell.className || ""; }
        else td.textContent = cell === null || cell === undefined ? "—" : String(cell);
      }
    }
  }

  function fmt(value, digits = 2) {
    return value === null || value === undefined ? "—" : Number(value).toFixed(digits);
  }

  const charts = new Map();
  const COLOURS = ["#0b6e4f", "#c2410c", "#1d4ed8", "#7c3aed", "#a16207", "#be123c"];

  // x: epoch seconds; series: [{label, values, bars}]
  function chart(el, x, series, options = {}) {
    if (charts.has(el)) charts.get(el).destroy();
    el.replaceChildren();
    const width = Math.max(320, el.clientWidth || 520);
    const plot = new uPlot({
      width, height: options.height || 260,
      // Energy bars start from zero; lines keep uPlot's automatic range.
      scales: { x: { time: true }, y: series.some((s) => s.bars) ? { range: (_u, min, max) => [Math.min(0, min), max * 1.05] } : {} },
      axes: [{}, { label: options.unit || "" }],
      series: [{}].concat(series.map((s, i) => ({
        label: s.label, stroke: COLOURS[i % COLOURS.length],
        fill: s.bars ? COLOURS[i % COLOURS.length] + "99" : undefined,
        width: s.bars ? 0 : 2,
        paths: s.bars ? uPlot.paths.bars({ size: [0.7, 60] }) : undefined,
        points: { show: false },
      }))),
    }, [x].concat(series.map((s) => s.values)), el);
    charts.set(el, plot);
    el.dataset.drawn = String(x.length);
    return plot;
  }

  function seconds(iso) { return Date.parse(iso) / 1000; }

  function header(title) {
    const who = document.getElementById("who");
    api("/me").then((me) => { who.textContent = me.name + " (" + me.role + ")"; })
      .catch(() => { window.location.href = "index.html"; });
    document.getElementById("logout").addEventListener("click", () => {
      setToken(null);
      window.location.href = "index.html";
    });
    document.title = "gridctl — " + title;
  }

  return { api, request, download, say, table, fmt, chart, seconds, header, setToken, token };
})();
