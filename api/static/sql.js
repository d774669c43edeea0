// The SQL page: ksqlDB statements through the API (analyst key). A SELECT goes to
// POST /ksql/query and its NDJSON lines fill the grid as they come (a push query until Stop,
// Esc or its LIMIT; Stop aborts the fetch and the API ends the query upstream); anything else
// goes to POST /ksql and each entity answers as a grid or a message. The side list is
// GET /ksql/sources. The key is kept in localStorage, never in the URL.
"use strict";

const MAX_ROWS = 2000; // a push query keeps the newest rows on the page
const state = { key: "", controller: null, sources: [] };

class ApiError extends Error {}

// The message to show: ksqlDB's own (`message`) as ksqlDB reports it, or the API's `detail`.
async function failure(res) {
  const body = await res.json().catch(() => ({}));
  if (typeof body.message === "string") return new ApiError(body.message);
  const detail = typeof body.detail === "string" ? body.detail
    : Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : res.statusText;
  return new ApiError(`${res.status}: ${detail}`);
}

async function call(path, options = {}) {
  const res = await fetch(path, {
    ...options,
    headers: { "X-API-Key": state.key, "Content-Type": "application/json" },
  });
  if (!res.ok) throw await failure(res);
  return res;
}

// ---- the side list -------------------------------------------------------------------------

function insertAtCursor(text) {
  const ed = $("#editor");
  const { selectionStart: a, selectionEnd: b, value } = ed;
  ed.value = value.slice(0, a) + text + value.slice(b);
  ed.selectionStart = ed.selectionEnd = a + text.length;
  ed.focus();
}

function drawSources() {
  const filter = $("#filter").value.trim().toLowerCase();
  const list = $("#source-list");
  list.replaceChildren();
  for (const s of state.sources) {
    if (filter && !s.name.toLowerCase().includes(filter)
        && !s.columns.some((c) => c.name.toLowerCase().includes(filter))) continue;
    const kind = (s.type || "").toLowerCase();
    const li = el("li", { class: "source", "data-name": s.name });
    const details = el("details");
    const summary = el("summary");
    const name = el("span", { class: "name", title: `${s.topic ? `topic ${s.topic}` : ""}` }, s.name);
    name.addEventListener("dblclick", () => insertAtCursor(s.name));
    summary.append(el("span", { class: `kind ${kind}` }, kind === "table" ? "TABLE" : "STREAM"), name);
    const cols = el("ul", { class: "columns" });
    for (const c of s.columns) {
      const item = el("li");
      const col = el("span", { class: `col${c.key ? " key" : ""}`, title: "insert" }, c.name);
      col.addEventListener("click", () => insertAtCursor(c.name));
      item.append(col, el("span", { class: "type" }, c.type));
      cols.append(item);
    }
    const query = el("li");
    const select = el("button", { class: "link", type: "button" }, kind === "table"
      ? "SELECT * (pull)" : "SELECT * … EMIT CHANGES");
    select.addEventListener("click", () => {
      $("#editor").value = kind === "table" ? `SELECT * FROM ${s.name};`
        : `SELECT * FROM ${s.name} EMIT CHANGES LIMIT 100;`;
      $("#editor").focus();
    });
    query.append(select);
    cols.append(query);
    details.append(summary, cols);
    li.append(details);
    list.append(li);
  }
}

async function loadSources() {
  const res = await call("/ksql/sources");
  state.sources = await res.json();
  drawSources();
}

// ---- results -------------------------------------------------------------------------------

function cell(value) {
  if (value === null || value === undefined) return el("td", { class: "null" }, "null");
  const text = typeof value === "object" ? JSON.stringify(value) : String(value);
  return el("td", { title: text }, text);
}

function grid(title, columns, rows, types) {
  const box = el("div", { class: "result" });
  if (title) box.append(el("h3", {}, title));
  const table = el("table", { class: "grid" });
  const head = el("tr");
  columns.forEach((c, i) => {
    const th = el("th", { scope: "col" });
    th.append(el("span", { class: "col-name" }, c));
    if (types && types[i]) th.append(el("small", {}, types[i]));
    head.append(th);
  });
  const thead = el("thead");
  thead.append(head);
  const tbody = el("tbody");
  for (const row of rows) tbody.append(rowOf(row));
  table.append(thead, tbody);
  box.append(table);
  return { box, tbody };
}

function rowOf(values) {
  const tr = el("tr");
  for (const v of values) tr.append(cell(v));
  return tr;
}

function showMessage(text, isError = false) {
  const box = $("#message");
  box.textContent = text || "";
  box.hidden = !text;
  box.classList.toggle("error", Boolean(isError));
}

function setStatus(text, running = false) {
  const s = $("#status");
  s.textContent = text;
  s.classList.toggle("running", running);
}

const LISTS = {
  streams: ["name", "topic", "keyFormat", "valueFormat", "isWindowed"],
  tables: ["name", "topic", "keyFormat", "valueFormat", "isWindowed"],
  queries: ["id", "queryType", "state", "sinks", "queryString"],
};

// One entity of /ksql's answer: a grid where it is a list, a message where it is a status.
function renderEntity(e, messages) {
  const kind = e["@type"];
  for (const w of e.warnings || []) messages.push(`warning: ${w.message || JSON.stringify(w)}`);
  if (LISTS[kind]) {
    const cols = LISTS[kind];
    return grid(`${kind} (${e[kind].length})`, cols, e[kind].map((i) => cols.map((c) => i[c]))).box;
  }
  if (kind === "kafka_topics") {
    return grid(`topics (${e.topics.length})`, ["name", "partitions", "replicas"],
      e.topics.map((t) => [t.name, (t.replicaInfo || []).length, Math.max(0, ...(t.replicaInfo || []))])).box;
  }
  if (kind === "sourceDescription") {
    const d = e.sourceDescription;
    const type = (f) => (f.schema && f.schema.type) || "";
    return grid(`${d.type} ${d.name} · topic ${d.topic} · ${d.keyFormat}/${d.valueFormat}`,
      ["column", "type", "key"], d.fields.map((f) => [f.name, type(f), f.type === "KEY" ? "key" : ""])).box;
  }
  if (kind === "currentStatus") {
    messages.push(e.commandStatus ? e.commandStatus.message : e.statementText);
    return null;
  }
  const list = Object.entries(e).find(([, v]) => Array.isArray(v) && v.length && typeof v[0] === "object");
  if (list) {
    const [name, items] = list;
    const cols = [...new Set(items.flatMap((i) => Object.keys(i)))];
    return grid(`${name} (${items.length})`, cols, items.map((i) => cols.map((c) => i[c]))).box;
  }
  messages.push(JSON.stringify(e, null, 2));
  return null;
}

// ---- running -------------------------------------------------------------------------------

// Comments and quoted text out of the way, to tell a query from other statements.
function code(text) {
  return text.replace(/'(?:[^']|'')*'|`(?:[^`]|``)*`|"(?:[^"]|"")*"|--[^\n]*|\/\*[\s\S]*?\*\//g, " ");
}

function isQuery(text) {
  const bare = code(text).trim().replace(/;\s*$/, "");
  return /^SELECT\b/i.test(bare) && !bare.includes(";");
}

function properties() {
  return { "auto.offset.reset": $("#offset").value };
}

function running(on) {
  $("#run").disabled = on;
  $("#stop").disabled = !on;
}

async function runStatements(text) {
  setStatus("running…", true);
  const res = await call("/ksql", {
    method: "POST", body: JSON.stringify({ ksql: text, streamsProperties: properties() }),
  });
  const entities = await res.json();
  const messages = [];
  const boxes = entities.map((e) => renderEntity(e, messages)).filter(Boolean);
  $("#results").replaceChildren(...boxes);
  showMessage(messages.join("\n"));
  setStatus(`${entities.length} statement${entities.length === 1 ? "" : "s"} done`);
  if (/^\s*(CREATE|DROP)\b/im.test(code(text))) loadSources().catch((err) => showError(err.message));
}

async function runQuery(text) {
  const controller = new AbortController();
  state.controller = controller;
  running(true);
  setStatus("starting…", true);
  let rows = 0, push = false, tbody = null, reason = "";
  try {
    const res = await fetch("/ksql/query", {
      method: "POST", signal: controller.signal,
      headers: { "X-API-Key": state.key, "Content-Type": "application/json" },
      body: JSON.stringify({ sql: text, properties: properties() }),
    });
    if (!res.ok) throw await failure(res);
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        const item = JSON.parse(line);
        if (item.header) {
          push = item.header.push;
          const g = grid(null, item.header.columnNames, [], item.header.columnTypes);
          g.box.dataset.queryId = item.header.queryId || "";
          tbody = g.box.querySelector("tbody");
          $("#results").replaceChildren(g.box);
          setStatus(push ? "push query running: rows arrive as they happen" : "pull query…", true);
        } else if (item.row) {
          rows += 1;
          const tr = rowOf(item.row);
          if (push) {
            tr.className = "fresh";
            setTimeout(() => tr.classList.remove("fresh"), 800);
          }
          tbody.append(tr);
          if (tbody.rows.length > MAX_ROWS) tbody.deleteRow(0);
          if (push) setStatus(`push query running: ${rows} row${rows === 1 ? "" : "s"}`, true);
        } else if (item.error) {
          showMessage(item.error.message || JSON.stringify(item.error), true);
          reason = "failed";
        } else if (item.end) {
          reason = push ? "ended (LIMIT)" : "done";
        }
      }
    }
    setStatus(`${rows} row${rows === 1 ? "" : "s"} · ${reason || "ended"}`);
  } catch (err) {
    if (err.name === "AbortError") {
      setStatus(`stopped · ${rows} row${rows === 1 ? "" : "s"}`);
    } else {
      setStatus("");
      showMessage(err.message, true);
    }
  } finally {
    if (state.controller === controller) state.controller = null;
    running(false);
  }
}

function stop() {
  if (state.controller) state.controller.abort();
}

async function run() {
  const ed = $("#editor");
  const selected = ed.value.slice(ed.selectionStart, ed.selectionEnd);
  let text = (selected.trim() ? selected : ed.value).trim();
  if (!text) return;
  if (!state.key) { showError("enter the analyst key and connect"); return; }
  if (!text.endsWith(";")) text += ";";
  stop();
  showMessage("");
  try {
    if (isQuery(text)) await runQuery(text);
    else await runStatements(text);
  } catch (err) {
    setStatus("");
    showMessage(err.message, true);
  }
}

// ---- wiring --------------------------------------------------------------------------------

async function connect(key) {
  state.key = key;
  localStorage.setItem("instore.sqlKey", key);
  try {
    await loadSources();
    $("#who").textContent = "connected";
    showError("");
  } catch (err) {
    $("#who").textContent = "";
    state.sources = [];
    drawSources();
    showError(err.message);
  }
}

function init() {
  const key = localStorage.getItem("instore.sqlKey") || "";
  $("#api-key").value = key;
  $("#key-form").addEventListener("submit", (e) => { e.preventDefault(); connect($("#api-key").value.trim()); });
  $("#run").addEventListener("click", run);
  $("#stop").addEventListener("click", stop);
  $("#refresh").addEventListener("click", () => connect(state.key || $("#api-key").value.trim()));
  $("#filter").addEventListener("input", drawSources);
  $("#editor").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); run(); }
    else if (e.key === "Escape") { e.preventDefault(); stop(); }
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && state.controller) stop();
  });
  if (key) connect(key);
}

init();
