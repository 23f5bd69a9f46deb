// The operator console: plain JavaScript over the control API (/api/v1), no build step.
// The token lives in sessionStorage and goes in the Authorization header, never in a
// cookie, so another site cannot make the browser act with it. Every URL is relative
// to the page, so the console works behind an ingress that adds a path prefix.
// Data is put in the page with textContent only (never as HTML).
"use strict";

// Connectors and groups arrive live (server-sent events, GET api/v1/events); the rest,
// and everything while the stream is down, is read every REFRESH_MS.
const REFRESH_MS = 5000;
const RECONNECT_MS = 2000;
const TOKEN_KEY = "connector-fleet-token";
const state = { role: null, stream: "" };

function api(path) {
  return new URL(`api/v1/${path}`, document.baseURI).toString();
}

async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(api(path), {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    showBanner(`The ops server does not answer: ${error.message}`);
    throw error;
  }
  const data = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (response.status === 503) {
    showBanner(`Redis is unavailable: ${data.reason || data.error}. ` +
               "What this page shows may be out of date.");
    throw new Error(data.error);
  }
  hideBanner();
  if (!response.ok) {
    const error = new Error(data.error || `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

function showBanner(text) {
  const banner = document.getElementById("banner");
  banner.textContent = text;
  banner.hidden = false;
}

function hideBanner() {
  document.getElementById("banner").hidden = true;
}

function notify(text) {
  const notice = document.getElementById("notice");
  notice.textContent = text;
  notice.hidden = false;
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "-" : String(text);
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function button(label, onClick, minimumRole) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  // null: reading, which the server may allow without a token (FLEET_API_READ_AUTH).
  b.disabled = minimumRole !== null && !hasRole(minimumRole);
  b.addEventListener("click", onClick);
  return b;
}

const RANKS = { viewer: 1, operator: 2, admin: 3 };
function hasRole(role) {
  return state.role !== null && RANKS[state.role] >= RANKS[role];
}

function stateOf(connector) {
  if (connector.paused) return ["paused", `paused by ${connector.paused.by}`];
  if (connector.healthy) return ["healthy", "healthy"];
  return ["unhealthy", connector.reason || "unhealthy"];
}

async function act(name, action, body) {
  try {
    await call("POST", `connectors/${encodeURIComponent(name)}/${action}`, body);
    notify(`${action}: ${name} done`);
  } catch (error) {
    notify(`${action}: ${name} failed: ${error.message}`);
  }
  await refresh();
}

function renderConnectors(connectors) {
  const body = document.getElementById("connectors");
  body.replaceChildren();
  for (const c of connectors) {
    const row = document.createElement("tr");
    row.dataset.connector = c.name;
    const [kind, label] = stateOf(c);
    const name = cell(row, "");
    name.replaceChildren(button(c.name, () => showDetails(c.name), null));
    cell(row, c.type);
    cell(row, label, `state state-${kind}`);
    cell(row, c.lastSuccessTime);
    cell(row, c.lagMs === null ? null : `${(c.lagMs / 1000).toFixed(1)} s`);
    cell(row, c.totalPolls);
    cell(row, c.failedPolls);
    cell(row, c.itemsPublished);
    cell(row, c.leaseHolder);
    cell(row, c.lastError ? `${c.lastError.at}: ${c.lastError.error}` : null, "error");
    const actions = cell(row, "");
    actions.replaceChildren(
      c.paused
        ? button("Resume", () => act(c.name, "resume"), "operator")
        : button("Pause", () => act(c.name, "pause", { reason: "paused from the console" }),
                 "operator"),
      button("Restart", () => act(c.name, "restart"), "operator"),
      button("Poll now", () => act(c.name, "poll"), "operator"),
    );
    body.appendChild(row);
  }
}

// One connector in full: its configuration (secrets redacted by the server), lease,
// metrics, pause flag and last error.
async function showDetails(name) {
  try {
    const data = await call("GET", `connectors/${encodeURIComponent(name)}`);
    document.getElementById("details-title").textContent = `Connector ${name}`;
    document.getElementById("details").textContent = JSON.stringify(data, null, 2);
    document.getElementById("details-section").hidden = false;
  } catch (error) {
    notify(`${name}: ${error.message}`);
  }
}

function renderGroups(groups) {
  const body = document.getElementById("groups");
  body.replaceChildren();
  for (const g of groups) {
    const row = document.createElement("tr");
    cell(row, g.stream);
    cell(row, g.group);
    cell(row, g.pending);
    cell(row, g.lag);
    cell(row, g.consumers.map((c) => `${c.name}${c.alive ? "" : " (gone)"}`).join(", "));
    const open = cell(row, "");
    open.replaceChildren(button("Show", () => showLetters(g.stream), null));
    body.appendChild(row);
  }
}

async function showLetters(stream) {
  state.stream = stream;
  document.getElementById("dlq-stream").value = stream;
  await refreshLetters();
}

async function refreshLetters() {
  if (!state.stream) return;
  const stream = encodeURIComponent(state.stream);
  const data = await call("GET", `streams/${stream}/dead-letters?count=200`);
  document.getElementById("dlq-summary").textContent =
    `${data.deadLetterStream}: ${data.total} dead letter(s)`;
  const body = document.getElementById("dead-letters");
  body.replaceChildren();
  for (const letter of data.deadLetters) {
    const row = document.createElement("tr");
    row.dataset.deadLetter = letter.id;
    cell(row, letter.id);
    cell(row, letter.entryId);
    cell(row, letter.rule);
    cell(row, letter.errorType);
    cell(row, letter.reason, "reason");
    cell(row, letter.attempts);
    cell(row, letter.deadLetteredAt);
    const actions = cell(row, "");
    actions.replaceChildren(button("Replay", () => replay({ ids: [letter.id] }), "operator"));
    body.appendChild(row);
  }
}

async function replay(selection) {
  const stream = encodeURIComponent(state.stream);
  const total = { replayed: 0, missing: 0, failed: 0 };
  let request = selection;
  try {
    // A request replays a bounded batch; "next" says where the following one goes on.
    for (let batch = 0; batch < 1000; batch += 1) {
      const result = await call("POST", `streams/${stream}/dead-letters/replay`, request);
      total.replayed += result.replayed.length;
      total.missing += result.missing.length;
      total.failed += result.failed.length;
      if (!result.more) break;
      request = { ...selection, after: result.next };
    }
    notify(`replayed ${total.replayed}, missing ${total.missing}, failed ${total.failed}`);
  } catch (error) {
    notify(`replay failed after ${total.replayed} replayed: ${error.message}`);
  }
  await refreshLetters();
}

async function refreshCatalog() {
  const data = await call("GET", "catalog");
  const body = document.getElementById("catalog");
  body.replaceChildren();
  for (const entry of data.capabilities) {
    const row = document.createElement("tr");
    cell(row, entry.id);
    cell(row, entry.version);
    cell(row, entry.keyId);
    cell(row, entry.revoked ? `revoked: ${entry.revoked.reason}` : entry.problem || "ok");
    body.appendChild(row);
  }
}

async function verifyAudit() {
  const report = await call("GET", "audit/verify");
  document.getElementById("audit-status").textContent = report.ok
    ? `audit chain OK: ${report.records} records, ${report.signed} signed`
    : `audit chain BROKEN: ${report.broken}`;
}

async function refresh() {
  try {
    const [connectors, groups] = await Promise.all([call("GET", "connectors"),
                                                    call("GET", "groups")]);
    renderConnectors(connectors.connectors);
    renderGroups(groups.groups);
    LagCharts.record(connectors.connectors, groups.groups);
    await refreshLetters();
    await refreshCatalog();
  } catch (error) {
    if (error.status === 401) notify("Sign in with a token to see the fleet.");
  }
  await DevicePages.refresh();  // devices.js: the devices or OTA page, when shown
}

// The event stream, read with fetch (EventSource cannot send the Authorization header).
async function follow() {
  for (;;) {
    try {
      const headers = { Accept: "text/event-stream" };
      const token = sessionStorage.getItem(TOKEN_KEY);
      if (token) headers.Authorization = `Bearer ${token}`;
      const response = await fetch(api("events"), { headers });
      if (response.ok && response.body) await readEvents(response.body.getReader());
    } catch (error) {
      // The server went away or restarted: try again shortly; the polling goes on.
    }
    await new Promise((resolve) => setTimeout(resolve, RECONNECT_MS));
  }
}

async function readEvents(reader) {
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      onEvent(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
    }
  }
}

function onEvent(block) {
  let kind = "message";
  let data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("event: ")) kind = line.slice(7);
    else if (line.startsWith("data: ")) data += line.slice(6);
  }
  const body = JSON.parse(data);
  if (kind === "unavailable") {
    showBanner(`Redis is unavailable: ${body.reason || body.error}. ` +
               "What this page shows may be out of date.");
  } else if (kind === "fleet") {
    hideBanner();
    renderConnectors(body.connectors);
    renderGroups(body.groups);
    LagCharts.record(body.connectors, body.groups);
  }
}

async function signIn(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  try {
    const me = await call("GET", "whoami");
    state.role = me.actor ? me.actor.role : null;
    document.getElementById("who").textContent = me.actor
      ? `${me.actor.name} (${me.actor.role})` : "not signed in (read only)";
  } catch (error) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.role = null;
    document.getElementById("who").textContent = "not signed in";
    if (error.status === 401 || error.status === 429) notify(`Sign-in failed: ${error.message}`);
  }
  await refresh();
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("login").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById("token");
    signIn(input.value.trim());
    input.value = "";
  });
  document.getElementById("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    signIn("");
  });
  document.getElementById("dlq-form").addEventListener("submit", (event) => {
    event.preventDefault();
    showLetters(document.getElementById("dlq-stream").value.trim());
  });
  document.getElementById("replay-all").addEventListener("click", () => replay({ all: true }));
  document.getElementById("verify-audit").addEventListener("click", verifyAudit);
  LagCharts.render();  // what this tab recorded before a reload
  signIn("");
  setInterval(refresh, REFRESH_MS);
  follow();
});
