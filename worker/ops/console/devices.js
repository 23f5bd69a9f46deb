// The console's Devices and OTA pages (#devices, #ota) over /api/v1/devices,
// /api/v1/device-groups and /api/v1/ota/rollouts. It uses console.js's call, cell,
// button, notify and hasRole, and is refreshed with the rest of the page (every
// REFRESH_MS, and at sign-in). Data goes in the page as text only, like console.js.
// Mutating controls are not drawn at all for a role that may not use them.
"use strict";

const DevicePages = (() => {
  const PAGE_SIZE = 1000;      // the API's largest page
  const SCAN_LIMIT = 10000;    // devices read per refresh: bounded work for a large fleet
  const SHOWN_LIMIT = 500;     // rows drawn in the devices table
  const STATUSES = ["online", "absent", "unknown"];
  const FINAL_STAGES = ["done", "rolled_back"];
  const filter = { group: "", status: "absent" };

  function page() {
    return document.body.dataset.page || "fleet";
  }

  function showPage() {
    const wanted = (location.hash || "#fleet").slice(1);
    document.body.dataset.page = ["devices", "ota"].includes(wanted) ? wanted : "fleet";
    refresh();
  }

  // Pages of the registry (in id order) until the end or SCAN_LIMIT: the status counts
  // are the registry's own statuses, with no index of their own on the server.
  async function readDevices(group) {
    const devices = [];
    let after = "";
    let total = 0;
    let complete = false;
    while (devices.length < SCAN_LIMIT) {
      const query = new URLSearchParams({ count: String(PAGE_SIZE) });
      if (after) query.set("after", after);
      if (group) query.set("group", group);
      const answer = await call("GET", `devices?${query}`);
      devices.push(...answer.devices);
      total = answer.total;
      if (answer.next === null) {
        complete = true;
        break;
      }
      after = answer.next;
    }
    return { devices, total, complete };
  }

  function renderCounts(read) {
    const tally = Object.fromEntries(STATUSES.map((s) => [s, 0]));
    for (const d of read.devices) tally[d.status] = (tally[d.status] || 0) + 1;
    const counts = document.getElementById("device-counts");
    counts.replaceChildren();
    for (const status of STATUSES) {
      const span = document.createElement("span");
      span.className = `status-${status}`;
      span.dataset.status = status;
      span.textContent = `${status}: ${tally[status]}`;
      counts.appendChild(span);
    }
    const scope = document.createElement("span");
    scope.className = "hint";
    scope.textContent = read.complete
      ? `${read.devices.length} device(s)${filter.group ? ` in ${filter.group}` : ""}`
      : `counted the first ${read.devices.length} of ${read.total} devices`;
    counts.appendChild(scope);
  }

  function renderDevices(devices) {
    const shown = devices.filter((d) => !filter.status || d.status === filter.status);
    const body = document.getElementById("devices");
    body.replaceChildren();
    for (const d of shown.slice(0, SHOWN_LIMIT)) {
      const row = document.createElement("tr");
      row.dataset.device = d.id;
      cell(row, d.id);
      cell(row, d.group);
      cell(row, d.status, `status status-${d.status}`);
      cell(row, d.lastSeen, "last-seen");
      cell(row, d.absentSinceMs ? new Date(d.absentSinceMs).toISOString() : null);
      cell(row, d.absences);
      cell(row, d.maintenanceWindow);
      body.appendChild(row);
    }
    if (shown.length > SHOWN_LIMIT) {
      const row = document.createElement("tr");
      cell(row, `... and ${shown.length - SHOWN_LIMIT} more: filter by group`).colSpan = 7;
      body.appendChild(row);
    }
  }

  async function refreshWindows() {
    const data = await call("GET", "device-groups");
    document.getElementById("window-form").hidden = !hasRole("operator");
    const body = document.getElementById("windows");
    body.replaceChildren();
    for (const w of data.windows) {
      const row = document.createElement("tr");
      row.dataset.window = w.id;
      cell(row, w.group);
      cell(row, w.start);
      cell(row, w.end);
      cell(row, w.reason, "reason");
      cell(row, w.createdBy);
      const actions = cell(row, "");
      if (hasRole("operator")) {
        actions.replaceChildren(button("Remove", () => removeWindow(w), "operator"));
      }
      body.appendChild(row);
    }
  }

  async function addWindow(event) {
    event.preventDefault();
    const group = document.getElementById("window-group").value.trim();
    const body = { for: document.getElementById("window-for").value.trim(),
                   reason: document.getElementById("window-reason").value.trim() };
    try {
      const w = await call("POST", `device-groups/${encodeURIComponent(group)}/maintenance`,
                           body);
      notify(`maintenance window for ${w.group} until ${w.end} added`);
      document.getElementById("window-form").reset();
    } catch (error) {
      notify(`maintenance window for ${group}: ${error.message}`);
    }
    await refresh();
  }

  async function removeWindow(w) {
    try {
      await call("DELETE", `device-groups/${encodeURIComponent(w.group)}/maintenance/` +
                           encodeURIComponent(w.id));
      notify(`maintenance window for ${w.group} removed`);
    } catch (error) {
      notify(`maintenance window for ${w.group}: ${error.message}`);
    }
    await refresh();
  }

  async function refreshDevices() {
    const read = await readDevices(filter.group);
    renderCounts(read);
    renderDevices(read.devices);
    await refreshWindows();
  }

  function progressCell(row, done, total, text, className) {
    const td = cell(row, "", className);
    const bar = document.createElement("progress");
    bar.max = Math.max(total, 1);
    bar.value = Math.min(done, bar.max);
    const label = document.createElement("span");
    label.textContent = text;
    td.replaceChildren(bar, label);
  }

  // Which of canary, soak and waves are over: the stages run in that order.
  function stageIndex(stage) {
    const order = ["canary", "soak", "waves", "done"];
    return order.includes(stage) ? order.indexOf(stage) : -1;
  }

  function renderRollout(r) {
    const row = document.createElement("tr");
    row.dataset.rollout = r.id;
    const at = stageIndex(r.stage);
    const s = r.states;
    const finished = s.updated + s.failed + s.rolled_back + s.rollback_failed;
    cell(row, r.id);
    cell(row, r.group);
    cell(row, r.version);
    cell(row, r.stage, `stage stage-${r.stage}`);
    // The canary devices come first in the plan: past the canary stage, all are done.
    const canaryDone = at === 0 ? Math.min(finished, r.canary.devices) : r.canary.devices;
    progressCell(row, canaryDone, r.canary.devices, `${canaryDone}/${r.canary.devices}` +
                 (r.canary.unhealthy ? `, ${r.canary.unhealthy} unhealthy` : ""), "canary");
    let soak = `${r.soak.seconds} s`;
    if (r.stage === "soak" && r.soak.untilMs) {
      soak = `until ${new Date(r.soak.untilMs).toISOString()}`;
    } else if (at > 1) {
      soak = "over";
    }
    cell(row, soak, "soak");
    progressCell(row, r.waves.done, r.waves.total, `${r.waves.done}/${r.waves.total}`,
                 "waves");
    cell(row, `${s.updated}/${r.devices}`, "updated");
    cell(row, s.failed + s.rollback_failed, "failed");
    cell(row, s.rolled_back, "rolled-back");
    cell(row, r.reason, "reason");
    const actions = cell(row, "");
    if (hasRole("operator") && !FINAL_STAGES.includes(r.stage)) {
      actions.replaceChildren(button("Resume", () => resume(r.id), "operator"));
    }
    return row;
  }

  async function resume(id) {
    try {
      const status = await call("POST", `ota/rollouts/${encodeURIComponent(id)}/resume`);
      notify(`rollout ${id} resumed at stage ${status.stage}`);
    } catch (error) {
      notify(`rollout ${id}: resume failed: ${error.message}`);
    }
    await refresh();
  }

  async function refreshRollouts() {
    const data = await call("GET", "ota/rollouts");
    const body = document.getElementById("rollouts");
    body.replaceChildren(...data.rollouts.map(renderRollout));
  }

  // The page shown, read again; errors are said by call() (the banner) or below.
  // One read at a time: a slow one (a large registry, a slow Redis) is not piled on by
  // the timer; a refresh asked meanwhile (a filter, a sign-in) runs once it ends.
  const reading = { busy: false, again: false };
  async function refresh() {
    if (reading.busy) {
      reading.again = true;
      return;
    }
    reading.busy = true;
    try {
      do {
        reading.again = false;
        await readShownPage();
      } while (reading.again);
    } finally {
      reading.busy = false;
    }
  }

  async function readShownPage() {
    try {
      if (page() === "devices") await refreshDevices();
      else if (page() === "ota") await refreshRollouts();
    } catch (error) {
      if (error.status === 401) notify("Sign in with a token to see the devices.");
      else if (error.status) notify(`${page()}: ${error.message}`);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.getElementById("device-filter").addEventListener("submit", (event) => {
      event.preventDefault();
      filter.group = document.getElementById("device-group").value.trim();
      filter.status = document.getElementById("device-status").value;
      refresh();
    });
    document.getElementById("window-form").addEventListener("submit", addWindow);
    window.addEventListener("hashchange", showPage);
    showPage();
  });

  return { refresh };
})();
