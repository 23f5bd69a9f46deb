// Lag over time: each connector's lag (ms behind its schedule) and each consumer group's
// lag (entries not yet read), sampled from what the page already receives (the event
// stream, GET connectors and groups) and kept in the browser: sessionStorage, so a
// reload keeps the history of the tab, bounded to MAX_POINTS per series and to series
// seen in the last MAX_AGE_MS. Drawn as SVG polylines built with DOM calls (no HTML
// strings, no inline style: the page's Content-Security-Policy is default-src 'self').
"use strict";

const LagCharts = (() => {
  const KEY = "connector-fleet-lag";
  const MAX_POINTS = 180;            // 6 minutes at the event stream's 2 s
  const MAX_SERIES = 100;
  const MAX_AGE_MS = 30 * 60 * 1000;
  const MIN_GAP_MS = 1000;           // a refresh right after an event adds no point
  const WIDTH = 240;
  const HEIGHT = 40;
  const SVG = "http://www.w3.org/2000/svg";

  function load() {
    try {
      const saved = JSON.parse(sessionStorage.getItem(KEY) || "{}");
      return saved && typeof saved === "object" ? saved : {};
    } catch (error) {
      return {};  // another version's format, or edited by hand: start again
    }
  }

  const series = load();

  function add(id, label, unit, value, now) {
    if (value === null || value === undefined || !Number.isFinite(value)) return;
    const entry = series[id] || (series[id] = { label, unit, points: [] });
    const last = entry.points[entry.points.length - 1];
    if (last && now - last[0] < MIN_GAP_MS) {
      last[1] = value;  // the newer reading of the same moment
      return;
    }
    entry.points.push([now, value]);
    if (entry.points.length > MAX_POINTS) entry.points.splice(0, entry.points.length - MAX_POINTS);
  }

  function prune(now) {
    for (const id of Object.keys(series)) {
      const points = series[id].points;
      if (!points.length || now - points[points.length - 1][0] > MAX_AGE_MS) delete series[id];
    }
    const ids = Object.keys(series);
    if (ids.length > MAX_SERIES) {
      ids.sort((a, b) => lastTime(series[a]) - lastTime(series[b]));
      for (const id of ids.slice(0, ids.length - MAX_SERIES)) delete series[id];
    }
  }

  function lastTime(entry) {
    return entry.points[entry.points.length - 1][0];
  }

  function record(connectors, groups, now = Date.now()) {
    for (const c of connectors || []) {
      add(`connector:${c.name}`, `connector ${c.name}`, "s",
          c.lagMs === null || c.lagMs === undefined ? null : c.lagMs / 1000, now);
    }
    for (const g of groups || []) {
      add(`group:${g.stream}/${g.group}`, `group ${g.group} on ${g.stream}`, "entries",
          g.lag, now);
    }
    prune(now);
    try {
      sessionStorage.setItem(KEY, JSON.stringify(series));
    } catch (error) {
      // storage full or disabled: the charts still work for this page
    }
    render();
  }

  function format(value, unit) {
    if (unit !== "s") return `${Math.round(value)} ${unit}`;
    if (value < 120) return `${value.toFixed(1)} s`;
    if (value < 7200) return `${(value / 60).toFixed(1)} min`;
    if (value < 172800) return `${(value / 3600).toFixed(1)} h`;
    return `${(value / 86400).toFixed(1)} d`;
  }

  function chart(entry) {
    const points = entry.points;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("width", WIDTH);
    svg.setAttribute("height", HEIGHT);
    svg.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
    svg.setAttribute("role", "img");
    const top = Math.max(...points.map((p) => p[1]), 1e-9);
    const first = points[0][0];
    const span = Math.max(points[points.length - 1][0] - first, 1);
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", "#2458b3");
    line.setAttribute("stroke-width", "1.5");
    line.setAttribute("points", points.map(([t, v]) => {
      const x = points.length === 1 ? WIDTH : ((t - first) / span) * (WIDTH - 2) + 1;
      const y = HEIGHT - 1 - (v / top) * (HEIGHT - 2);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    }).join(" "));
    svg.appendChild(line);
    const title = document.createElementNS(SVG, "title");
    title.textContent = `${entry.label}: ${points.length} readings`;
    svg.appendChild(title);
    return svg;
  }

  function render() {
    const body = document.getElementById("lag-charts");
    if (!body) return;
    body.replaceChildren();
    for (const id of Object.keys(series).sort()) {
      const entry = series[id];
      const values = entry.points.map((p) => p[1]);
      const row = document.createElement("tr");
      row.dataset.series = id;
      row.dataset.points = String(values.length);
      const cells = [[entry.label, "lag-name"],
                     [format(values[values.length - 1], entry.unit), "lag-now"],
                     [format(Math.max(...values), entry.unit), "lag-max"]];
      for (const [text, className] of cells) {
        const td = document.createElement("td");
        td.textContent = text;
        td.className = className;
        row.appendChild(td);
      }
      const graph = document.createElement("td");
      graph.appendChild(chart(entry));
      row.appendChild(graph);
      body.appendChild(row);
    }
  }

  return { record, render };
})();
