// The ops view: the stack's checks, data quality per source topic (dead letters against their
// thresholds, late and out-of-order positions) and the pipeline's engineering totals, from
// GET /ops/status with the ops role's X-API-Key (kept in sessionStorage for this tab).
"use strict";

const state = { key: sessionStorage.getItem("instore-ops-key") || "", timer: null };

function cell(text, cls) {
  return el("td", cls ? { class: cls } : {}, text);
}

function row(...cells) {
  const tr = document.createElement("tr");
  tr.append(...cells);
  return tr;
}

const pct = (x) => `${(100 * x).toFixed(1)} %`;

function detailText(value) {
  return typeof value === "string" ? value : JSON.stringify(value);
}

function render(status) {
  const strip = $("#state");
  strip.replaceChildren();
  const label = status.ok ? (status.degraded ? "degraded" : "ready") : "not ready";
  for (const [name, value] of [["stack", label], ["checks", Object.keys(status.checks).length]]) {
    const box = document.createElement("div");
    const b = document.createElement("b");
    b.textContent = value;
    b.id = name === "stack" ? "stack-state" : "";
    const s = document.createElement("span");
    s.textContent = name;
    box.append(b, s);
    strip.append(box);
  }
  const checks = $("#checks tbody");
  checks.replaceChildren();
  for (const [name, check] of Object.entries(status.checks)) {
    const mark = check.ok ? "ok" : (name === "data_quality" ? "degraded" : "failing");
    checks.append(row(cell(name), cell(mark, `state-${mark}`), cell(detailText(check.detail))));
  }
  const dq = status.checks.data_quality;
  const body = $("#quality tbody");
  body.replaceChildren();
  if (!dq || !dq.topics) {
    body.append(row(cell("no data-quality counts (is the archiver running?)")));
    return;
  }
  $("#quality-window").textContent = `last ${Math.round(dq.window_s / 60)} min`;
  for (const [topic, e] of Object.entries(dq.topics)) {
    const reasons = Object.entries(e.reasons).map(([r, n]) => `${r}: ${n}`).join(", ");
    const tr = row(cell(topic), cell(e.records.toLocaleString()),
      cell(e.dead_letters.toLocaleString()), cell(pct(e.dead_letter_share)),
      cell(pct(e.threshold)), cell(reasons || "none"));
    if (e.degraded) tr.className = "degraded";
    tr.dataset.topic = topic;
    body.append(tr);
  }
  $("#positions-quality").textContent = `positions late: ${dq.late_positions}, ` +
    `out of order: ${dq.out_of_order_positions}`;
  const totals = $("#totals tbody");
  totals.replaceChildren();
  for (const [name, value] of Object.entries(status.totals || {}).sort()) {
    totals.append(row(cell(name), cell(Number(value).toLocaleString())));
  }
}

async function refresh() {
  try {
    const res = await fetch("/ops/status", { headers: { "X-API-Key": state.key } });
    if (res.status === 401 || res.status === 403) {
      showError("this key is not the ops role's");
      return;
    }
    if (!res.ok) throw new Error(`/ops/status: ${res.status}`);
    render(await res.json());
    showError("");
    $("#who").textContent = "ops";
  } catch (err) {
    showError(String(err.message || err));
  }
}

function connect(key) {
  state.key = key;
  sessionStorage.setItem("instore-ops-key", key);
  clearInterval(state.timer);
  refresh();
  state.timer = setInterval(refresh, 5000);
}

$("#key-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  connect($("#api-key").value.trim());
});
if (state.key) connect(state.key);
