// The stream lineage page: GET /lineage drawn as SVG in layers left to right (sources ->
// topics -> agents and queries -> topics -> sinks), each edge labelled with its records/s and
// its consumer lag; redrawn every few seconds. The key (analyst, marketer or ops) is kept in
// localStorage, never in the URL.
"use strict";

const REFRESH_MS = 3000;
const LAGGING = 1000; // records behind before an edge is drawn as lagging
const NODE_W = 180, NODE_H = 44, COL_GAP = 120, ROW_GAP = 22, PAD = 24, PORT_GAP = 15;
const KIND_ORDER = { source: 0, topic: 1, agent: 2, query: 3, sink: 4 };
const state = { key: "", timer: null };

async function getLineage() {
  const res = await fetch("/lineage", { headers: { "X-API-Key": state.key } });
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    throw new Error(`/lineage: ${res.status} ${typeof body.detail === "string" ? body.detail : ""}`);
  }
  return res.json();
}

// ---- layout: longest path from the sources gives the layer; order within a layer by the mean
// position of the nodes feeding it (two sweeps), so edges cross less.
function layout(graph) {
  const ids = graph.nodes.map((n) => n.id);
  const layer = Object.fromEntries(ids.map((id) => [id, 0]));
  for (let round = 0; round < ids.length; round += 1) { // bounded: a cycle cannot loop forever
    let moved = false;
    for (const e of graph.edges) {
      if (layer[e.from] === undefined || layer[e.to] === undefined) continue;
      if (layer[e.to] < layer[e.from] + 1) { layer[e.to] = layer[e.from] + 1; moved = true; }
    }
    if (!moved) break;
  }
  const byId = Object.fromEntries(graph.nodes.map((n) => [n.id, n]));
  const columns = [];
  for (const id of ids) (columns[layer[id]] = columns[layer[id]] || []).push(id);
  const cols = columns.filter(Boolean);
  for (const col of cols) {
    col.sort((a, b) => (KIND_ORDER[byId[a].kind] - KIND_ORDER[byId[b].kind])
      || byId[a].label.localeCompare(byId[b].label));
  }
  const index = {};
  const place = () => cols.forEach((col) => col.forEach((id, i) => { index[id] = i; }));
  place();
  const feeders = {};
  for (const e of graph.edges) (feeders[e.to] = feeders[e.to] || []).push(e.from);
  for (let sweep = 0; sweep < 2; sweep += 1) {
    for (const col of cols.slice(1)) {
      const centre = (id) => {
        const from = (feeders[id] || []).filter((f) => index[f] !== undefined);
        return from.length ? from.reduce((s, f) => s + index[f], 0) / from.length : index[id];
      };
      const keys = Object.fromEntries(col.map((id) => [id, centre(id)]));
      col.sort((a, b) => keys[a] - keys[b]);
      place();
    }
  }
  // a node is as tall as its ports need: every edge enters (or leaves) at a port of its own,
  // so the label beside the port never sits on another edge's label
  const ins = {}, outs = {};
  for (const e of graph.edges) {
    if (index[e.from] === undefined || index[e.to] === undefined) continue;
    (outs[e.from] = outs[e.from] || []).push(e);
    (ins[e.to] = ins[e.to] || []).push(e);
  }
  const tall = (id) => Math.max(NODE_H, PORT_GAP * Math.max((ins[id] || []).length,
    (outs[id] || []).length) + 10);
  const colHeight = (col) => col.reduce((s, id) => s + tall(id), 0) + (col.length - 1) * ROW_GAP;
  const height = PAD * 2 + Math.max(...cols.map(colHeight));
  const pos = {};
  cols.forEach((col, x) => {
    let y = (height - colHeight(col)) / 2;
    for (const id of col) {
      pos[id] = { x: PAD + x * (NODE_W + COL_GAP), y, h: tall(id) };
      y += tall(id) + ROW_GAP;
    }
  });
  const ports = {}; // edge -> {out: y, in: y}
  const spread = (id, list, side, other) => {
    list.sort((a, b) => pos[a[other]].y - pos[b[other]].y);
    const first = pos[id].y + pos[id].h / 2 - (PORT_GAP * (list.length - 1)) / 2;
    list.forEach((e, i) => { (ports[edgeKey(e)] = ports[edgeKey(e)] || {})[side] = first + i * PORT_GAP; });
  };
  for (const [id, list] of Object.entries(outs)) spread(id, list, "out", "to");
  for (const [id, list] of Object.entries(ins)) spread(id, list, "in", "from");
  return { pos, ports, width: PAD * 2 + cols.length * NODE_W + (cols.length - 1) * COL_GAP, height };
}

function edgeKey(e) {
  return `${e.from}|${e.to}|${e.topic}`;
}

function fmtRate(rate) {
  if (rate === null || rate === undefined) return "– /s";
  if (rate >= 100) return `${Math.round(rate)}/s`;
  return `${rate.toFixed(rate >= 10 ? 1 : 2).replace(/\.?0+$/, "") || "0"}/s`;
}

function edgeLabel(e) {
  if (!e.topic) return "";
  const lag = e.lag === null || e.lag === undefined ? "" : ` · lag ${e.lag.toLocaleString()}`;
  return fmtRate(e.rate_per_s) + lag;
}

function subLine(n) {
  if (n.kind === "topic") {
    if (n.exists === false) return "missing";
    const parts = [];
    if (n.rate_per_s !== undefined) parts.push(fmtRate(n.rate_per_s));
    if (n.end_offset !== undefined) parts.push(`${n.end_offset.toLocaleString()} records`);
    return parts.join(" · ") || (n.table ? "table" : "stream");
  }
  if (n.kind === "query") return `ksqlDB · ${(n.state || "").toLowerCase()}`;
  if (n.group_state) {
    const g = n.group_state;
    return `${n.kind === "agent" ? "Faust · " : ""}${g.state}, ${g.members} member${g.members === 1 ? "" : "s"}`;
  }
  if (n.counters) return `${Object.keys(n.counters).length} counters`;
  return n.kind === "agent" ? "Faust agent" : n.kind;
}

function tooltip(n) {
  const lines = [n.id];
  for (const key of ["description", "group", "statement"]) if (n[key]) lines.push(`${key}: ${n[key]}`);
  if (n.counters) {
    for (const [k, v] of Object.entries(n.counters)) {
      const r = (n.counter_rates || {})[k];
      lines.push(`${k}: ${v}${r === undefined ? "" : ` (${fmtRate(r)})`}`);
    }
  }
  return lines.join("\n");
}

function clip(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function draw(graph) {
  const svg = $("#graph");
  const { pos, ports, width, height } = layout(graph);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  const edges = el("svg:g", { class: "edges" });
  const labels = el("svg:g", { class: "edge-labels" });
  for (const e of graph.edges) {
    const a = pos[e.from], b = pos[e.to], port = ports[edgeKey(e)];
    if (!a || !b || !port) continue;
    const x1 = a.x + NODE_W, y1 = port.out, x2 = b.x, y2 = port.in;
    const dx = Math.max(40, (x2 - x1) / 2);
    const cls = ["edge"];
    if (e.lag !== null && e.lag > LAGGING) cls.push("lagging");
    else if (e.rate_per_s) cls.push("flowing");
    const widthPx = e.rate_per_s ? Math.min(5, 1.2 + Math.log10(1 + e.rate_per_s)) : 1.2;
    const path = el("svg:path", {
      class: cls.join(" "), d: `M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}`,
      "stroke-width": widthPx.toFixed(2), "data-from": e.from, "data-to": e.to,
      "marker-end": "url(#arrow)",
    });
    path.append(el("svg:title", {}, `${e.topic || ""}: ${e.from} → ${e.to}`
      + `${e.group ? `\ngroup ${e.group}` : ""}\n${edgeLabel(e)}`));
    edges.append(path);
    const text = edgeLabel(e);
    if (text) {
      // a consumer edge is labelled at the reader's port (its lag), a write at the writer's
      const atReader = e.to.startsWith("topic:") === false;
      labels.append(el("svg:text", {
        class: "edge-label", x: atReader ? x2 - 8 : x1 + 8, y: (atReader ? y2 : y1) - 3,
        "text-anchor": atReader ? "end" : "start", "data-from": e.from, "data-to": e.to,
      }, text));
    }
  }
  const nodes = el("svg:g", { class: "nodes" });
  for (const n of graph.nodes) {
    const p = pos[n.id];
    const cls = ["node", `node-${n.kind}`];
    if (n.contract === false) cls.push("internal");
    if (n.group_state && n.group_state.members === 0) cls.push("idle");
    const g = el("svg:g", { class: cls.join(" "), "data-id": n.id, transform: `translate(${p.x},${p.y})` });
    g.append(el("svg:title", {}, tooltip(n)));
    g.append(el("svg:rect", { width: NODE_W, height: p.h, rx: n.kind === "topic" ? 4 : 10 }));
    const top = p.h / 2 - 4;
    g.append(el("svg:text", { x: 10, y: top }, clip(n.label, 26)));
    g.append(el("svg:text", { class: "sub", x: 10, y: top + 15 }, clip(subLine(n), 30)));
    nodes.append(g);
  }
  const defs = el("svg:defs");
  const marker = el("svg:marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5,
    markerWidth: 7, markerHeight: 7, markerUnits: "userSpaceOnUse", orient: "auto" });
  marker.append(el("svg:path", { d: "M0,0 L10,5 L0,10 z", fill: "#868e96" }));
  defs.append(marker);
  svg.replaceChildren(defs, edges, nodes, labels);
}

function drawStatus(graph) {
  const strip = $("#status");
  strip.replaceChildren();
  for (const [name, s] of Object.entries(graph.sources)) {
    const box = el("div", { class: s.ok ? "ok" : "bad", title: s.detail });
    box.append(el("b", {}, `${name} ${s.ok ? "✓" : "✗"}`), el("span", {}, clip(s.detail, 90)));
    strip.append(box);
  }
  const when = el("div");
  when.append(el("b", {}, new Date(graph.sampled_at).toLocaleTimeString()),
    el("span", {}, graph.interval_s ? `rates over ${graph.interval_s.toFixed(1)} s` : "rates from the next sample"));
  strip.append(when);
  $("#warnings").replaceChildren(...graph.warnings.map((w) => el("li", {}, w)));
}

async function refresh() {
  try {
    const graph = await getLineage();
    draw(graph);
    drawStatus(graph);
    $("#who").textContent = "connected";
    showError("");
  } catch (err) {
    $("#who").textContent = "";
    showError(err.message);
  }
}

function connect(key) {
  state.key = key;
  localStorage.setItem("instore.lineageKey", key);
  if (state.timer) clearInterval(state.timer);
  refresh();
  state.timer = setInterval(refresh, REFRESH_MS);
}

function init() {
  const key = localStorage.getItem("instore.lineageKey") || "";
  $("#api-key").value = key;
  $("#key-form").addEventListener("submit", (e) => { e.preventDefault(); connect($("#api-key").value.trim()); });
  if (key) connect(key);
}

init();
