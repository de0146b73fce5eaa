// The ddb-backup web console: plain JavaScript, no build step. Open it as
// index.html?api=<API base URL>[&table=<table>]; the API key stays in sessionStorage.
"use strict";

const params = new URLSearchParams(location.search);
const api = (params.get("api") || location.origin).replace(/\/+$/, "");
const $ = (id) => document.getElementById(id);
const keyField = $("api-key");
const tableField = $("table");
let following = null;

keyField.value = sessionStorage.getItem("ddb-backup-api-key") || "";
tableField.value = params.get("table") || sessionStorage.getItem("ddb-backup-table") || "studentData";
$("api-base").textContent = "API: " + api;

// An error as the API words it: the field and its message; a browser that blocked the call
// (CORS) or an API that cannot be reached gets a sentence saying which.
class ApiError extends Error {}

async function call(method, path, body) {
  let response;
  try {
    response = await fetch(api + path, {
      method,
      headers: Object.assign(
        { "x-api-key": keyField.value },
        body === undefined ? {} : { "content-type": "application/json" }
      ),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(
      `The browser blocked the call to ${api} or could not reach it: this page's origin ` +
        `(${location.origin}) may not be allowed to call the API (CORS), or the API is down.`
    );
  }
  let payload = {};
  try {
    payload = await response.json();
  } catch (e) {
    payload = {};
  }
  if (!response.ok) {
    if (response.status === 403 && payload.message === "Forbidden") {
      throw new ApiError("403 Forbidden: the API key was refused. Check the key and try again.");
    }
    const field = payload.field ? `${payload.field}: ` : "";
    throw new ApiError(`${response.status} ${field}${payload.error || payload.message || response.statusText}`);
  }
  return payload;
}

function showError(error) {
  const box = $("error");
  if (!error) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  box.hidden = false;
  box.textContent = error.message || String(error);
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

function duration(ms) {
  if (ms === null || ms === undefined) return "–";
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

function count(n) {
  return n === null || n === undefined ? "–" : n.toLocaleString("en-US");
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

async function refresh() {
  showError(null);
  sessionStorage.setItem("ddb-backup-api-key", keyField.value);
  sessionStorage.setItem("ddb-backup-table", tableField.value);
  const list = await call("GET", `/backups?table=${encodeURIComponent(tableField.value)}&limit=30`);
  const body = $("backups").tBodies[0];
  body.replaceChildren();
  for (const b of list.backups) {
    const row = body.insertRow();
    cell(row, b.date);
    cell(row, b.job_id);
    cell(row, b.trigger || "–");
    cell(row, b.state, `state-${b.state}`);
    cell(row, count(b.items), "num");
    cell(row, bytes(b.bytes), "num");
    cell(row, duration(b.duration_ms), "num");
    cell(row, b.format || "–");
    cell(
      row,
      b.state !== "complete" ? "–" : b.consistent_as_of ? `as of ${b.consistent_as_of}` : "fuzzy",
      b.consistent_as_of ? "consistent" : "fuzzy",
    );
    const files = row.insertCell();
    if (b.state === "complete") {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = "Files";
      button.setAttribute("aria-label", `Files of ${b.job_id}`);
      button.addEventListener("click", () => showFiles(b.job_id).catch(showError));
      files.append(button);
    } else if (b.error) {
      files.textContent = b.error;
    }
    const restore = row.insertCell();
    if (b.state === "complete" && b.manifest) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = "Restore";
      button.setAttribute("aria-label", `Restore ${b.job_id}`);
      button.addEventListener("click", () => chooseRestore(b));
      restore.append(button);
    }
  }
  $("empty").hidden = list.backups.length > 0;
  drawCharts(list.backups.filter((b) => b.state === "complete").slice(0, 30).reverse());
}

function drawCharts(backups) {
  const charts = $("charts");
  charts.replaceChildren();
  const series = [
    ["Items", (b) => b.items, count],
    ["Stored size", (b) => b.bytes, bytes],
    ["Duration", (b) => b.duration_ms, duration],
  ];
  for (const [title, value, label] of series) {
    const figure = document.createElement("figure");
    figure.className = "chart";
    const heading = document.createElement("h3");
    heading.textContent = title;
    figure.append(heading);
    const width = 300;
    const height = 80;
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    svg.setAttribute("role", "img");
    const values = backups.map(value);
    const max = Math.max(1, ...values);
    const last = backups.length ? label(values[values.length - 1]) : "no backups";
    svg.setAttribute("aria-label", `${title} of the last ${backups.length} backups; latest ${last}`);
    const bar = backups.length ? width / backups.length : width;
    backups.forEach((b, i) => {
      const rect = document.createElementNS("http://www.w3.org/2000/svg", "rect");
      const h = Math.max(1, (values[i] / max) * (height - 4));
      rect.setAttribute("x", i * bar + 1);
      rect.setAttribute("y", height - h);
      rect.setAttribute("width", Math.max(1, bar - 2));
      rect.setAttribute("height", h);
      if (b.items_change_percent !== null && b.items_change_percent !== undefined && b.items_change_percent <= -20) {
        rect.setAttribute("class", "shrank");
      }
      const tip = document.createElementNS("http://www.w3.org/2000/svg", "title");
      tip.textContent = `${b.date} ${b.job_id}: ${label(values[i])}`;
      rect.append(tip);
      svg.append(rect);
    });
    figure.append(svg);
    charts.append(figure);
  }
}

async function showFiles(jobId) {
  const listing = await call("GET", `/backup/${encodeURIComponent(jobId)}/files`);
  const list = $("file-list");
  list.replaceChildren();
  const link = (entry, text) => {
    const item = document.createElement("li");
    if (entry.url) {
      const a = document.createElement("a");
      a.href = entry.url;
      a.textContent = text;
      a.setAttribute("download", entry.name);
      item.append(a);
    } else {
      item.textContent = `${text} (no download link for this store)`;
    }
    return item;
  };
  list.append(link(listing.manifest, `manifest.json of ${jobId}`));
  for (const file of listing.files) {
    const item = link(file, file.name);
    item.append(` ${bytes(file.bytes)}, ${count(file.items)} items, SHA-256 ${file.sha256}`);
    list.append(item);
  }
  $("files").hidden = false;
}

// A restore writes a backup into a new table, on queued workers; the API accepts only names
// matching the deployment's pattern (restored-* by default) and never an existing table.
let restoreSource = null;

function chooseRestore(backup) {
  restoreSource = backup;
  $("restore-source").textContent = `Backup ${backup.job_id} of ${backup.date}, ${count(backup.items)} items`;
  $("restore-table").value = `restored-${tableField.value}`;
  $("restore").hidden = false;
  $("restore-table").focus();
}

async function startRestore() {
  showError(null);
  const button = $("restore-start");
  button.disabled = true;
  try {
    const queued = await call("POST", "/restore", {
      backup: restoreSource.manifest,
      table: $("restore-table").value,
    });
    $("job-title").textContent = "Current restore";
    $("job-status").textContent = `Restore ${queued.job_id} into ${queued.restore_into} queued…`;
    $("job").hidden = false;
    await follow(queued.job_id);
  } finally {
    button.disabled = false;
  }
}

function describe(status) {
  const state = status.state;
  if (status.restore_into) {
    const what = `Restore ${status.job_id} into ${status.restore_into}`;
    if (state === "complete") return `${what} complete: ${count(status.items)} items.`;
    if (state === "failed") return `${what} failed: ${status.error || "unknown error"}.`;
    const workers = status.workers ? `; ${status.workers_done || 0} of ${status.workers} workers done` : "";
    return `${what} ${state}${workers}…`;
  }
  if (state === "complete") {
    return `Backup ${status.job_id} complete: ${count(status.items)} items, ${bytes(status.bytes)} stored.`;
  }
  if (state === "failed") {
    const retry = status.will_retry ? " SQS will try it again." : "";
    return `Backup ${status.job_id} failed at ${status.stage || "?"}: ${status.error || "unknown error"}.${retry}`;
  }
  let text = `Backup ${status.job_id} ${state}`;
  const p = status.progress;
  if (p) {
    text += `: ${count(p.items)} items read`;
    if (p.fraction !== null && p.fraction !== undefined) {
      text += ` (~${Math.round(p.fraction * 100)} %, estimated`;
      if (p.seconds_left !== null && p.seconds_left !== undefined) {
        text += `, ~${duration(p.seconds_left * 1000)} left`;
      }
      text += ")";
    }
  }
  if (status.workers) text += `; ${status.workers_done || 0} of ${status.workers} workers done`;
  return text + "…";
}

async function follow(jobId) {
  const token = {};
  following = token;
  $("job").hidden = false;
  const bar = $("job-progress");
  for (;;) {
    if (following !== token) return;
    const status = await call("GET", `/backup/${encodeURIComponent(jobId)}`);
    $("job-status").textContent = describe(status);
    $("job-status").dataset.state = status.state;
    const fraction = status.progress && status.progress.fraction;
    bar.hidden = !(status.state === "running" && typeof fraction === "number");
    if (!bar.hidden) bar.value = fraction;
    if (status.state === "complete" || (status.state === "failed" && !status.will_retry)) {
      await refresh();
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

async function backupNow() {
  showError(null);
  sessionStorage.setItem("ddb-backup-api-key", keyField.value);
  const button = $("backup-now");
  button.disabled = true;
  try {
    const queued = await call("POST", "/backup", { table: tableField.value });
    $("job-title").textContent = "Current backup";
    $("job-status").textContent = `Backup ${queued.job_id} queued…`;
    $("job").hidden = false;
    await follow(queued.job_id);
  } finally {
    button.disabled = false;
  }
}

$("controls").addEventListener("submit", (event) => {
  event.preventDefault();
  refresh().catch(showError);
});
$("backup-now").addEventListener("click", () => backupNow().catch(showError));
$("restore-form").addEventListener("submit", (event) => {
  event.preventDefault();
  startRestore().catch(showError);
});
if (keyField.value) refresh().catch(showError);
